"""Text no database of mami's can store: NUL (PostgreSQL's text type
refuses it outright) and unpaired surrogates (not encodable as UTF-8,
which JSON's `\\ud800` escapes can still produce). A request carrying one
anywhere (query, form, JSON body) is refused with a readable 400 before
any view sees it, so nothing is half-written and no 500 follows; text
mami gets from elsewhere (the chat model) is cleaned instead
(`storable`)."""

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext

from mami.notices import refused

from .api_guard import API_PREFIX, api_error

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` without the characters no database can store."""
    return _UNSTORABLE.sub("", text)


def _texts(value: Any, name: str) -> Iterator[tuple[str, str]]:
    """Every string in a parsed JSON value, with the field it is in."""
    if isinstance(value, str):
        yield name, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield name, str(key)
            yield from _texts(item, str(key))
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item, name)


def _fields(request: HttpRequest) -> Iterator[tuple[str, str]]:
    for key, values in request.GET.lists():
        yield key, key
        for value in values:
            yield key, value
    if request.method not in {"POST", "PUT", "PATCH"}:
        return
    if request.content_type == "application/json":
        try:
            texts = list(_texts(json.loads(request.body), "body"))
        except (ValueError, RecursionError):
            return  # not JSON (or nested past reason): the view says so
        yield from texts
    else:
        for key, values in request.POST.lists():
            yield key, key
            for value in values:
                yield key, value


def unstorable_field(request: HttpRequest) -> str | None:
    """The name of the first field whose text cannot be stored, if any."""
    for name, text in _fields(request):
        if _UNSTORABLE.search(text):
            return name
    return None


class RefuseUnstorableText:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        field = unstorable_field(request)
        if field is None:
            return self.get_response(request)
        if request.path.startswith(API_PREFIX):
            return api_error(
                400,
                "invalid_request",
                f"The field {field!r} contains a character that cannot be stored "
                "(NUL, \\u0000, or an unpaired surrogate). Remove it and send again.",
                [{"field": field, "reason": "unstorable_character"}],
            )
        # A field's name ("q", "text") means nothing to a person; what they
        # typed is in one place on the page they came from.
        message = gettext(
            "What you sent contains a character that cannot be stored (a NUL or a broken "
            "character). Remove it and try again."
        )
        if request.headers.get("HX-Request"):
            # The page keeps what was typed and shows why it was refused.
            return refused(message, 400)
        return render(request, "400.html", {"message": message}, status=400)
