"""Error pages that keep mami's look and the visitor's language."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import csrf


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: Django's own page renders its template without the
    request, so the page would lose the language form and the login; with
    DEBUG on, Django's page explains the reason to the developer instead."""
    if settings.DEBUG:
        return csrf.csrf_failure(request, reason)
    return render(request, "403_csrf.html", status=403)
