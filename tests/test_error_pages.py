"""Errors a visitor meets are mami's own pages, in the visitor's language,
never Django's debug pages or its bare defaults."""

import pytest
from django.test import Client
from django.urls import include, path

pytestmark = pytest.mark.django_db


def _broken_view(request):  # type: ignore[no-untyped-def]
    raise RuntimeError("a bug")


# This module doubles as a URLconf: mami's, plus a view with a bug.
urlpatterns = [path("broken/", _broken_view), path("", include("mami.urls"))]
handler500 = "mami.unavailable.server_error"


@pytest.mark.parametrize(
    ("language", "title", "way_back"),
    [
        ("en", "Nothing here", "Back to your conversations"),
        ("tr", "Burada bir şey yok", "Sohbetlerinize dönün"),
    ],
)
def test_an_unknown_address_is_mamis_own_404(client, alice, language, title, way_back):
    client.force_login(alice)
    response = client.get("/no/such/page/", headers={"accept-language": language})
    assert response.status_code == 404
    page = response.content.decode()
    assert f"<h1>{title}</h1>" in page
    assert way_back in page
    assert 'class="topbar"' in page


@pytest.mark.urls("tests.test_error_pages")
@pytest.mark.parametrize(
    ("language", "title"), [("en", "Something went wrong"), ("tr", "Bir şeyler ters gitti")]
)
def test_a_bug_is_mamis_own_500_without_a_traceback(language, title):
    client = Client(raise_request_exception=False)
    response = client.get("/broken/", headers={"accept-language": language})
    assert response.status_code == 500
    page = response.content.decode()
    assert f"<h1>{title}</h1>" in page
    assert "a bug" not in page
    assert "Traceback" not in page


def test_an_expired_form_says_so_and_how_to_go_on(alice):
    client = Client(enforce_csrf_checks=True, headers={"accept-language": "tr"})
    client.force_login(alice)
    response = client.post("/conversations/new/", {"text": "/image a fox"})
    assert response.status_code == 403
    page = response.content.decode()
    assert "<h1>Bu formun süresi doldu</h1>" in page
    assert 'class="topbar"' in page
