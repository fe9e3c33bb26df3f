"""Sockets cannot be abused: a limit per user, junk messages ignored or
closed without a traceback, the open-sockets gauge back to its start however
sockets close, logout closing a session's sockets, unknown paths refused
cleanly, and an origin check on scheme, host and port."""

import json
import logging

import pytest
from channels.db import database_sync_to_async as db
from django.test import Client

from chat.models import OpenSocket
from imagejobs.metrics import open_websockets
from tests.helpers import browser_socket, make_conversation, request_picture

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def _session(client: Client, user) -> bytes:
    await db(client.force_login)(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def _gauge() -> float:
    return open_websockets._value.get()


async def test_a_user_may_hold_only_so_many_sockets(client, alice, settings):
    settings.MAMI_MAX_SOCKETS_PER_USER = 2
    conversation = await db(make_conversation)(alice)
    cookie = await _session(client, alice)
    path = f"/ws/conversations/{conversation.id}/"
    first, second, third = (browser_socket(path, cookie) for _ in range(3))
    assert (await first.connect())[0]
    assert (await second.connect())[0]
    assert (await third.connect())[0]
    assert await third.receive_output() == {"type": "websocket.close", "code": 4429}
    assert await db(OpenSocket.objects.filter(user=alice).count)() == 2
    # One closes: the next tab may open.
    await first.disconnect()
    fourth = browser_socket(path, cookie)
    assert (await fourth.connect())[0]
    await fourth.receive_nothing(timeout=0.3)
    await second.disconnect()
    await fourth.disconnect()
    assert await db(OpenSocket.objects.count)() == 0


async def test_a_dead_processes_sockets_stop_counting(client, alice, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.MAMI_MAX_SOCKETS_PER_USER = 1
    conversation = await db(make_conversation)(alice)
    # A socket row left by a web process that crashed long ago.
    stale = timezone.now() - timedelta(seconds=settings.MAMI_SOCKET_STALE_SECONDS + 1)
    await db(OpenSocket.objects.create)(
        channel_name="gone!1",
        user=alice,
        conversation=conversation,
        language="en",
        opened_at=stale,
        seen_at=stale,
    )
    socket = browser_socket(f"/ws/conversations/{conversation.id}/", await _session(client, alice))
    assert (await socket.connect())[0]
    await socket.receive_nothing(timeout=0.3)
    # The workers' sweeps remove such rows.
    from imagejobs import sweeps

    swept = await db(sweeps.run_all)()
    assert swept["stale socket rows removed"] == 1
    assert not await db(OpenSocket.objects.filter(pk="gone!1").exists)()
    assert await db(OpenSocket.objects.filter(user=alice).count)() == 1
    await socket.disconnect()


@pytest.mark.parametrize(
    "junk",
    [
        "not json",
        "[" * 8000 + "]" * 8000,
        json.dumps({"sync": "not a list"}),
        json.dumps({"sync": [1, None, {"a": 1}, "not-a-uuid"]}),
        json.dumps({"unknown": True}),
        json.dumps([1, 2, 3]),
        json.dumps({"sync": [[[[["deep"]]]]] * 50}),
    ],
    ids=["text", "deeply nested", "sync not a list", "bad ids", "unknown key", "a list", "lists"],
)
async def test_junk_messages_are_ignored_and_the_socket_keeps_working(client, alice, junk):
    conversation = await db(make_conversation)(alice)
    job = await db(request_picture)(conversation, "a fox")
    socket = browser_socket(f"/ws/conversations/{conversation.id}/", await _session(client, alice))
    assert (await socket.connect())[0]
    await socket.receive_from()
    await socket.send_to(text_data=junk)
    await socket.receive_nothing(timeout=0.3)
    await socket.send_to(text_data=json.dumps({"sync": [str(job.id)]}))
    # The card answers; a queue move's place fragment may come first.
    frame = await socket.receive_from()
    while frame.lstrip().startswith('<div id="place-'):
        frame = await socket.receive_from()
    assert f'id="job-{job.id}"' in frame
    await socket.disconnect()


@pytest.mark.parametrize("message", [{"text_data": "x" * 20_000}, {"bytes_data": b"\x00\x01"}])
async def test_an_oversized_or_binary_message_closes_with_4008_and_a_log_line(
    client, alice, message, caplog
):
    conversation = await db(make_conversation)(alice)
    socket = browser_socket(f"/ws/conversations/{conversation.id}/", await _session(client, alice))
    assert (await socket.connect())[0]
    with caplog.at_level(logging.WARNING, logger="chat.consumers"):
        await socket.send_to(**message)
        assert await socket.receive_output() == {"type": "websocket.close", "code": 4008}
    (line,) = [record for record in caplog.records if record.name == "chat.consumers"]
    assert f"socket of conversation {conversation.id} sent" in line.getMessage()
    assert line.exc_info is None
    await socket.disconnect()  # what the server then gets from the browser
    assert await db(OpenSocket.objects.count)() == 0


async def test_the_gauge_returns_to_its_start_however_sockets_close(client, alice, bob, settings):
    settings.MAMI_MAX_SOCKETS_PER_USER = 1
    conversation = await db(make_conversation)(alice)
    cookie = await _session(client, alice)
    path = f"/ws/conversations/{conversation.id}/"
    start = _gauge()
    kept = browser_socket(path, cookie)
    assert (await kept.connect())[0]
    refused_over_limit = browser_socket(path, cookie)
    await refused_over_limit.connect()
    await refused_over_limit.receive_output()
    refused_stranger = browser_socket(path, await _session(Client(), bob))
    await refused_stranger.connect()
    await refused_stranger.receive_output()
    policy = browser_socket(path, cookie)
    await policy.connect()
    await policy.receive_output()  # refused: the limit of 1 is taken
    assert _gauge() == start + 1
    await kept.send_to(bytes_data=b"closed by the server")
    assert (await kept.receive_output())["code"] == 4008
    await kept.disconnect()
    for refused in (refused_over_limit, refused_stranger, policy):
        await refused.disconnect()
    assert _gauge() == start


async def test_logging_out_closes_that_sessions_sockets_at_once(client, alice):
    conversation = await db(make_conversation)(alice)
    cookie = await _session(client, alice)
    socket = browser_socket(f"/ws/conversations/{conversation.id}/", cookie)
    assert (await socket.connect())[0]
    await socket.receive_nothing(timeout=0.2)
    response = await db(client.post)("/accounts/logout/")
    assert response.status_code == 302
    assert await socket.receive_output(timeout=3) == {"type": "websocket.close", "code": 4401}


@pytest.mark.parametrize("path", ["/ws/nope/", "/ws/conversations/not-a-uuid/", "/elsewhere"])
async def test_an_unknown_socket_path_is_refused_cleanly(client, alice, path):
    socket = browser_socket(path, await _session(client, alice))
    connected, _ = await socket.connect()
    assert connected
    assert await socket.receive_output() == {"type": "websocket.close", "code": 4404}


@pytest.mark.parametrize(
    ("origin", "host", "extra", "allowed"),
    [
        (b"http://localhost", b"localhost", {}, True),
        (b"http://localhost:8000", b"localhost:8000", {}, True),
        (b"http://localhost:9999", b"localhost:8000", {}, False),
        (b"https://localhost", b"localhost", {}, False),
        (b"https://localhost", b"localhost", {"x_forwarded_proto": b"https"}, True),
        (b"http://localhost", b"localhost", {"x_forwarded_proto": b"https"}, False),
        (b"http://evil.example", b"evil.example", {}, False),
        (b"http://evil.example", b"localhost", {}, False),
        (b"null", b"localhost", {}, False),
    ],
)
async def test_the_origin_must_match_scheme_host_and_port(
    client, alice, origin, host, extra, allowed
):
    conversation = await db(make_conversation)(alice)
    socket = browser_socket(
        f"/ws/conversations/{conversation.id}/",
        await _session(client, alice),
        origin=origin,
        host=host,
        **extra,
    )
    connected, _ = await socket.connect()
    assert connected is allowed
    if connected:
        await socket.disconnect()
