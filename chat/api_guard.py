"""Checks on JSON API requests made before a view reads the body: a body
too large is 413, a body that is not JSON is 415, an unknown path is 404,
each in the API's error shape, never Django's HTML pages or a 500. The
API answers in English whatever the caller's Accept-Language (a client
program reads the codes; docs/api.md)."""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import translation

API_PREFIX = "/api/"


def api_error(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> JsonResponse:
    """The API's one error shape: {"error": {"code", "message", "details"?}}."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JsonResponse({"error": body}, status=status)


class ApiRequestGuard:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        if request.method in {"POST", "PUT", "PATCH"}:
            refusal = _refusal(request)
            if refusal is not None:
                return refusal
        with translation.override("en"):
            return self.get_response(request)


def _refusal(request: HttpRequest) -> HttpResponse | None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return api_error(400, "invalid_request", "The Content-Length header is not a number.")
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and length > limit:
        return _too_large(f"The request body is {length} bytes", limit)
    # A chunked body has no Content-Length: only the body itself, which the
    # server has buffered, says whether there is one and how large it is
    # (Django measures the buffer before reading it into memory).
    try:
        body = request.body
    except RequestDataTooBig:
        return _too_large("The request body is larger than that", limit)
    if body and request.content_type != "application/json":
        return api_error(
            415,
            "unsupported_media_type",
            f"Send the body as JSON (Content-Type: application/json), not "
            f"{request.content_type or 'without a Content-Type'}.",
        )
    return None


def _too_large(what: str, limit: int | None) -> JsonResponse:
    return api_error(413, "too_large", f"{what}; the most the API takes is {limit} bytes.")


def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    return api_error(404, "not_found", f"There is no API endpoint at {request.path}.")
