"""What a request gets while the database is away (a restart, a failover):
a readable 503 saying to try again shortly, never a traceback or the
generic 500. Pages get mami's page, htmx requests a notice (the page
keeps what was typed), the API its JSON error with Retry-After."""

import sys

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext
from django.views import defaults

from chat.api_guard import API_PREFIX, api_error

from .db_outage import OUTAGE_ERRORS, database, drop_connection
from .notices import refused

# Seconds a client is told to wait: a restart takes a few.
RETRY_AFTER = 5


def unavailable_response(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIX):
        response: HttpResponse = api_error(
            503,
            "service_unavailable",
            "The database is not reachable right now (a restart, most likely). "
            "Nothing was changed; try again in a few seconds.",
        )
    elif request.headers.get("HX-Request"):
        message = gettext(
            "mami cannot reach its database right now. Nothing was lost: try again in a "
            "few seconds."
        )
        response = refused(message, 503)
    else:
        # A page of its own: base.html would ask the database who is logged in.
        response = render(request, "503.html", status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    return response


class DatabaseOutageMiddleware:
    """A view that met the database away answers 503 (`process_exception`);
    what fails outside a view is turned into the same by `server_error`."""

    def __init__(self, get_response):  # type: ignore[no-untyped-def]
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if database.down and _reachable():
            # A web process has no heartbeat: a request is its probe.
            database.succeeded()
        return response

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not isinstance(exc, OUTAGE_ERRORS):
            return None
        drop_connection()
        database.failed("web request", exc)
        return unavailable_response(request)


def _reachable() -> bool:
    try:
        connection.ensure_connection()
        return connection.is_usable()
    except OUTAGE_ERRORS:
        drop_connection()
        return False


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: Django calls it while handling the exception."""
    exc = sys.exc_info()[1]
    if isinstance(exc, OUTAGE_ERRORS):
        drop_connection()
        database.failed("web request", exc)
        return unavailable_response(request)
    return defaults.server_error(request)
