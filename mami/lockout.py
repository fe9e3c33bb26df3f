"""What a login form says while django-axes holds an account or address
after repeated failures: the same form, with a clear error, and 429."""

from typing import Any

from axes.helpers import get_cool_off
from django.contrib import admin
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext

from imagejobs.timespan import duration


class _HeldLoginForm(AuthenticationForm):
    """The login form as typed, whose only answer is the hold: it never
    tries to authenticate again."""

    def __init__(self, request: HttpRequest, message: str) -> None:
        super().__init__(request, data=request.POST or None)
        self.held_message = message

    def clean(self) -> dict[str, Any]:
        raise ValidationError(self.held_message, code="locked_out")


def locked_out(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    cool_off = get_cool_off(request)
    wait = duration(cool_off.total_seconds()) if cool_off else gettext("a while")
    form = _HeldLoginForm(
        request,
        gettext("Too many failed logins for this account or address. Wait %(wait)s and try again.")
        % {"wait": wait},
    )
    if request.path.startswith("/admin/"):
        context = {**admin.site.each_context(request), "form": form, "title": gettext("Log in")}
        return render(request, "admin/login.html", context, status=429)
    return render(
        request, "registration/login.html", {"form": form, "locked_out": True}, status=429
    )
