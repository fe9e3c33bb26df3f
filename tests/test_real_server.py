"""What only a real server shows: mami under Daphne as docs/deploy.md runs
it (`--proxy-headers`), reached over HTTP as a client would reach it,
forged headers and chunked bodies included."""

import asyncio
import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from chat.models import Conversation, OpenSocket
from imagejobs.models import ImageJob
from imagejobs.tokens import create_token
from tests.helpers import PASSWORD, make_conversation, real_daphne, session_id, wait_for

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


async def _socket(base: str, conversation: Conversation, session: str) -> Any:
    return await websockets.connect(
        f"{base.replace('http://', 'ws://')}/ws/conversations/{conversation.id}/",
        additional_headers={"Cookie": f"sessionid={session}", "Origin": base},
    )


async def _close_code(socket: Any, within: float = 10) -> int | None:
    """How the server closed `socket`; None if it stays open `within`."""
    try:
        async with asyncio.timeout(within):
            async for _message in socket:
                pass
    except TimeoutError:
        return None
    except websockets.ConnectionClosed:
        pass  # closed with an error code: the code is what counts
    return socket.close_code


def test_bad_frames_close_with_4008_and_give_their_slots_back(alice, tmp_path: Path):
    """Daphne lets no application close with 1008: before, each bad frame
    was a 1011 with a traceback, and its slot stayed taken for good."""
    conversation = make_conversation(alice)
    session = session_id(alice)
    with real_daphne(tmp_path, MAMI_MAX_SOCKETS_PER_USER="3") as base:

        async def bad_frames() -> list[int | None]:
            codes = []
            for n in range(8):
                socket = await _socket(base, conversation, session)
                with contextlib.suppress(websockets.ConnectionClosed):
                    await socket.send(b"\x00\x01" if n % 2 else "x" * 20_000)
                codes.append(await _close_code(socket))
            return codes

        assert asyncio.run(bad_frames()) == [4008] * 8
        wait_for(lambda: not OpenSocket.objects.filter(user=alice).exists(), timeout=10)

        async def full_allowance() -> list[int | None]:
            sockets = [await _socket(base, conversation, session) for _ in range(3)]
            codes = [await _close_code(socket, within=0.5) for socket in sockets]
            for socket in sockets:
                await socket.close()
            return codes

        assert asyncio.run(full_allowance()) == [None, None, None], "every slot was free"
    (log,) = tmp_path.glob("daphne-*.log")
    text = log.read_text()
    assert text.count("sent a binary message") == 4
    assert text.count("sent an oversized message") == 4
    assert "Traceback" not in text
