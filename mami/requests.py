"""What a request carries once mami's middleware has run, for the type
checker: htmx's details (django-htmx) and, behind `login_required` or the
API's token, the signed-in user."""

from django.contrib.auth.models import User
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxRequest(HttpRequest):
    htmx: HtmxDetails


class SignedInRequest(HtmxRequest):
    # Narrower than HttpRequest's (User | AnonymousUser): signed in.
    user: User
