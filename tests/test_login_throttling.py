"""Repeated failed logins hold that username (and that address) for a while,
on the site's login and the admin's; the form says so, and even the right
password waits. A success resets the count."""

import pytest
from django.contrib.auth import get_user_model

from tests.helpers import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"


def _fail(client, url: str, username: str, times: int, address: str = "10.0.0.1") -> None:
    for _ in range(times):
        response = client.post(
            url, {"username": username, "password": "wrong"}, REMOTE_ADDR=address
        )
        assert response.status_code in (200, 429)


def _login(client, url: str, username: str, address: str = "10.0.0.1"):
    return client.post(url, {"username": username, "password": PASSWORD}, REMOTE_ADDR=address)


def test_after_five_failures_even_the_right_password_waits(client, alice, settings):
    _fail(client, LOGIN, "alice", 5)
    response = _login(client, LOGIN, "alice")
    assert response.status_code == 429
    page = response.content.decode()
    assert "Too many failed logins for this account or address. Wait 15 minutes" in page
    assert 'value="alice"' in page, "the form keeps the username"
    assert "_auth_user_id" not in client.session


def test_the_admin_login_is_held_the_same_way(client, django_user_model):
    django_user_model.objects.create_superuser("root", password=PASSWORD)
    _fail(client, ADMIN_LOGIN, "root", 5)
    response = _login(client, ADMIN_LOGIN, "root")
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_a_success_resets_the_count(client, alice):
    _fail(client, LOGIN, "alice", 4)
    assert _login(client, LOGIN, "alice").status_code == 302
    client.logout()
    _fail(client, LOGIN, "alice", 4)
    assert _login(client, LOGIN, "alice").status_code == 302


def test_one_address_trying_many_usernames_is_held_too(client, alice):
    for name in ("bob", "carol", "dave", "erin", "frank"):
        _fail(client, LOGIN, name, 1, address="10.9.9.9")
    assert _login(client, LOGIN, "alice", address="10.9.9.9").status_code == 429
    # Alice on her own address is not affected.
    assert _login(client, LOGIN, "alice", address="10.0.0.2").status_code == 302


def test_the_limits_are_settings(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 2
    _fail(client, LOGIN, "alice", 2)
    assert _login(client, LOGIN, "alice").status_code == 429


def test_the_turkish_login_form_says_it_in_turkish(client, alice):
    _fail(client, LOGIN, "alice", 5)
    response = client.post(
        LOGIN,
        {"username": "alice", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.1",
        HTTP_ACCEPT_LANGUAGE="tr",
    )
    assert response.status_code == 429
    assert "çok fazla başarısız giriş denemesi" in response.content.decode()


def test_password_reset_pages_are_off_without_a_mail_server(client):
    assert client.get("/accounts/password_reset/").status_code == 404


def test_no_user_row_is_touched_by_a_held_login(client, alice):
    before = get_user_model().objects.get(pk=alice.pk).last_login
    _fail(client, LOGIN, "alice", 5)
    _login(client, LOGIN, "alice")
    assert get_user_model().objects.get(pk=alice.pk).last_login == before


@pytest.mark.parametrize(
    ("proxies", "forwarded", "peer", "address"),
    [
        # No proxy: the socket's peer, whatever the header says.
        (0, "192.0.2.1", "10.0.0.1", "10.0.0.1"),
        # One proxy: the entry it appended; what the client wrote is ignored.
        (1, "192.0.2.1, 198.51.100.7", "198.51.100.7", "198.51.100.7"),
        (2, "192.0.2.1, 198.51.100.7, 10.1.1.1", "192.0.2.1", "198.51.100.7"),
        # Fewer entries than proxies, or not an address: the peer.
        (2, "198.51.100.7", "198.51.100.7", "198.51.100.7"),
        (1, "192.0.2.1, unknown", "192.0.2.1", "192.0.2.1"),
        (1, "", "10.0.0.1", "10.0.0.1"),
    ],
)
def test_the_client_address_is_what_the_trusted_proxies_saw(
    rf, settings, proxies, forwarded, peer, address
):
    from mami.client_address import client_address

    settings.MAMI_TRUSTED_PROXIES = proxies
    request = rf.get("/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR=peer)
    assert client_address(request) == address
