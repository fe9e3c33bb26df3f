"""Small HTTP helpers shared by the pages' action views."""

import json

from django.http import HttpResponse


def with_notice(response: HttpResponse, message: str) -> HttpResponse:
    """Ask the page to show `message` (static/js/mami.js listens)."""
    response["HX-Trigger"] = json.dumps({"mami:notice": {"message": message}})
    return response
