"""Answers that leave the page as it is and ask it to show a notice
(static/js/mami.js listens for `mami:notice`): a refusal keeps what was
typed, and the notice says why."""

from django.http import HttpResponse
from django_htmx.http import reswap, trigger_client_event


def with_notice(response: HttpResponse, message: str) -> HttpResponse:
    """Ask the page to show `message` along with `response`."""
    return trigger_client_event(response, "mami:notice", {"message": message})


def refused(message: str, status: int) -> HttpResponse:
    """`status`, nothing swapped, and `message` shown as a notice."""
    return with_notice(reswap(HttpResponse(message, status=status), "none"), message)
