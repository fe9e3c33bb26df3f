"""What only a real server shows: mami under Daphne as docs/deploy.md runs
it (`--proxy-headers`), reached over HTTP as a client would reach it,
forged headers and chunked bodies included."""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imagejobs.models import ImageJob
from imagejobs.tokens import create_token
from tests.helpers import PASSWORD, real_daphne

pytestmark = pytest.mark.django_db(transaction=True)

LOGIN = "/accounts/login/"
# What the proxy in front saw and appended to X-Forwarded-For.
PROXY_SAW = "198.51.100.7"


def _try_login(client: httpx.Client, username: str, password: str, forwarded: str) -> int:
    page = client.get(LOGIN)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text
    answer = client.post(
        LOGIN,
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": token.group(1),
        },
        headers={"X-Forwarded-For": forwarded},
    )
    return answer.status_code


def test_a_forged_forwarded_for_neither_dodges_nor_aims_the_login_limit(alice, bob, tmp_path: Path):
    with real_daphne(tmp_path, proxy_headers=True, MAMI_TRUSTED_PROXIES="1") as base:
        with httpx.Client(base_url=base, timeout=10) as attacker:
            # A new address of its own choosing on every try: all are one
            # machine behind the proxy, held from the fifth on.
            answers = [
                _try_login(attacker, f"nobody{n}", "wrong", f"203.0.113.{n}, {PROXY_SAW}")
                for n in range(8)
            ]
            assert answers == [200] * 4 + [429] * 4
        with httpx.Client(base_url=base, timeout=10) as attacker:
            # Naming a real user's address holds the attacker's own instead.
            for n in range(5):
                _try_login(attacker, f"someone{n}", "wrong", f"192.0.2.44, {PROXY_SAW}")
        with httpx.Client(base_url=base, timeout=10) as victim:
            # bob, from the address the attacker named, logs in.
            assert _try_login(victim, "bob", PASSWORD, "192.0.2.44") == 302


def _chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    # A generator body: httpx sends it with Transfer-Encoding: chunked and
    # no Content-Length, as a streaming client does.
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("text/plain", b'{"prompt": "a fox"}', 415, "unsupported_media_type"),
        ("application/json", json.dumps({"prompt": "x" * 5_000_000}).encode(), 413, "too_large"),
        ("text/plain", b"x" * 5_000_000, 413, "too_large"),
    ],
)
def test_a_chunked_body_is_measured_and_typed_like_any_other(
    alice, tmp_path: Path, content_type, body, status, code
):
    _token, key = create_token(alice, "chunked")
    with real_daphne(tmp_path) as base:
        answer = httpx.post(
            f"{base}/api/image/generate",
            content=_chunks(body),
            headers={"Authorization": f"Bearer {key}", "Content-Type": content_type},
            timeout=30,
        )
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["message"]
    assert not ImageJob.objects.exists()
