"""The conversation socket, through Channels' WebsocketCommunicator against
the real ASGI application (origin check, session auth, routing)."""

import re
import uuid

import pytest
from channels.db import database_sync_to_async as db
from channels.layers import get_channel_layer

from imagejobs.transitions import (
    do_cancel,
    do_claim_next,
    do_complete,
    do_fail,
    do_progress,
)
from imagejobs.worker import Worker
from mami import push
from mami.push import conversation_group
from tests.helpers import browser_socket, make_conversation, open_socket, request_picture

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

CARD = re.compile(r'<article id="job-(?P<id>[0-9a-f-]+)".*?</article>', re.S)


async def _cookie(client, user) -> bytes:
    await db(client.force_login)(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def _socket(
    conversation_id,
    cookie: bytes | None = None,
    origin: bytes = b"http://localhost",
    accept_language: bytes = b"en",
):
    return browser_socket(
        f"/ws/conversations/{conversation_id}/",
        cookie,
        origin=origin,
        accept_language=accept_language,
    )


def _cards(frame: str) -> dict[str, str]:
    return {match["id"]: match[0] for match in CARD.finditer(frame)}


def _version(card: str) -> int:
    return int(re.search(r'data-version="(\d+)"', card)[1])


async def _receive_card(socket, job_id) -> str:
    """The next frame that carries this job's card."""
    while True:
        frame = await socket.receive_from(timeout=3)
        cards = _cards(frame)
        if str(job_id) in cards:
            return cards[str(job_id)]


async def test_the_owner_gets_every_unfinished_card_on_connect(client, alice, forge):
    conversation = await db(make_conversation)(alice)
    done = await db(request_picture)(conversation, "done fox", steps=2)
    await db(Worker(forge.url).step)()
    first = await db(request_picture)(conversation, "fox one")
    second = await db(request_picture)(conversation, "fox two")

    socket = _socket(conversation.id, await _cookie(client, alice))
    connected, _ = await socket.connect()
    assert connected
    cards = _cards(await socket.receive_from())
    assert set(cards) == {str(first.id), str(second.id)}
    assert "#1 in line" in cards[str(first.id)]
    assert "#2 in line" in cards[str(second.id)]
    assert str(done.id) not in cards
    await socket.disconnect()


@pytest.mark.parametrize("who", ["stranger", "anonymous"])
async def test_anyone_but_the_owner_is_refused_with_4403(client, alice, bob, who):
    conversation = await db(make_conversation)(alice)
    await db(request_picture)(conversation, "a secret fox")
    cookie = await _cookie(client, bob) if who == "stranger" else None
    socket = _socket(conversation.id, cookie)
    connected, _ = await socket.connect()
    # Accepted then closed, so htmx's ws extension doesn't keep retrying.
    assert connected
    assert await socket.receive_output() == {"type": "websocket.close", "code": 4403}


async def test_an_unknown_conversation_is_refused(client, alice):
    socket = _socket(uuid.uuid4(), await _cookie(client, alice))
    assert (await socket.connect())[0]
    assert (await socket.receive_output())["code"] == 4403


async def test_a_foreign_origin_is_refused(client, alice):
    conversation = await db(make_conversation)(alice)
    socket = _socket(conversation.id, await _cookie(client, alice), origin=b"http://evil.example")
    connected, _ = await socket.connect()
    assert not connected


async def test_updates_arrive_in_order_and_end_with_the_picture(client, alice):
    conversation = await db(make_conversation)(alice)
    job = await db(request_picture)(conversation, "a red fox")
    socket = _socket(conversation.id, await _cookie(client, alice))
    await socket.connect()
    assert "#1 in line" in await _receive_card(socket, job.id)

    await db(do_claim_next)("gpu-1")
    processing = await _receive_card(socket, job.id)
    assert 'data-status="processing"' in processing

    await db(do_progress)(job.id, progress=40, eta_seconds=3.0)
    progressed = await _receive_card(socket, job.id)
    assert "40%" in progressed

    await db(do_complete)(job.id, image_name="jobs/fox.png", seed=3, info={})
    complete = await _receive_card(socket, job.id)
    assert 'data-status="complete"' in complete
    assert f'src="/jobs/{job.id}/image/' in complete
    assert [_version(card) for card in (processing, progressed, complete)] == [2, 3, 4]
    await socket.disconnect()


async def test_an_older_card_is_never_sent_after_a_newer_one(client, alice):
    conversation = await db(make_conversation)(alice)
    job = await db(request_picture)(conversation, "a red fox")
    socket = _socket(conversation.id, await _cookie(client, alice))
    await socket.connect()
    await _receive_card(socket, job.id)
    await db(do_claim_next)("gpu-1")
    await _receive_card(socket, job.id)

    stale = {
        "id": str(job.id),
        "version": 1,
        "progress": 0,
        "asked": 0.0,
        "html": {"en": f'<article id="job-{job.id}">stale</article>'},
    }
    await get_channel_layer().group_send(
        conversation_group(conversation.id), {"type": "job.cards", "cards": [stale]}
    )
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()


async def test_when_the_queue_moves_other_users_cards_get_their_new_place(client, alice, bob):
    alice_job = await db(request_picture)(await db(make_conversation)(alice), "alice's fox")
    bob_conversation = await db(make_conversation)(bob)
    bob_job = await db(request_picture)(bob_conversation, "bob's owl")
    socket = _socket(bob_conversation.id, await _cookie(client, bob))
    await socket.connect()
    assert "#2 in line" in await _receive_card(socket, bob_job.id)

    assert (await db(do_claim_next)("gpu-1")).id == alice_job.id
    # Only what changed for bob: his card's place, not the whole card.
    frame = await socket.receive_from(timeout=3)
    assert frame.strip().startswith(f'<div id="place-{bob_job.id.hex}"')
    assert "#1 in line" in frame
    assert "<article" not in frame
    # bob never receives alice's card.
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


async def test_queue_moves_render_only_for_watched_conversations_in_their_language(
    client, alice, bob
):
    from django.test import Client

    from imagejobs import broadcast

    unwatched = await db(make_conversation)(alice)
    await db(request_picture)(unwatched, "nobody looks at this one")
    watched = await db(make_conversation)(bob)
    job = await db(request_picture)(watched, "bob's owl")
    turkish = _socket(watched.id, await _cookie(client, bob), accept_language=b"tr")
    english = _socket(watched.id, await _cookie(Client(), bob))
    for socket in (turkish, english):
        await socket.connect()
        await socket.receive_from()
    sent = []
    original = push.group_send_many
    push.group_send_many = lambda sends: (sent.extend(sends), original(sends))
    try:
        await db(broadcast.queue_changed)()
    finally:
        push.group_send_many = original
    # One event for the whole move, carrying the watched conversation only.
    assert [group for group, _event in sent] == [broadcast.PLACES_GROUP]
    assert list(sent[0][1]["places"]) == [watched.id.hex]
    event = sent[0][1]["places"][watched.id.hex]
    assert len(event["asked"]) == 1
    assert set(event["html"]) == {"en", "tr"}
    turkish_html, english_html = "".join(event["html"]["tr"]), "".join(event["html"]["en"])
    assert f'id="place-{job.id.hex}"' in turkish_html
    assert "Sırada #2" in turkish_html
    assert "#2 in line" in english_html
    for socket in (turkish, english):
        await socket.disconnect()


async def test_a_sync_request_repairs_cards_that_finished_while_away(client, alice, forge):
    conversation = await db(make_conversation)(alice)
    job = await db(request_picture)(conversation, "a red fox", steps=2)
    other = await db(request_picture)(
        await db(make_conversation)(alice), "another conversation's fox"
    )
    await db(Worker(forge.url).step)()

    socket = _socket(conversation.id, await _cookie(client, alice))
    await socket.connect()
    assert await socket.receive_nothing(timeout=0.2)
    await socket.send_json_to({"sync": [str(job.id), str(other.id)]})
    frame = await socket.receive_from()
    assert set(_cards(frame)) == {str(job.id)}
    assert 'data-status="complete"' in frame
    await socket.send_to(text_data="not json")
    assert await socket.receive_nothing(timeout=0.2)
    await socket.disconnect()


@pytest.mark.parametrize("state", ["queued", "processing", "complete", "error", "canceled"])
async def test_the_socket_sends_the_same_card_the_page_shows(client, alice, state):
    conversation = await db(make_conversation)(alice)
    job = await db(request_picture)(conversation, "a red fox " * 12)
    if state != "queued":
        await db(do_claim_next)("gpu-1")
    if state == "processing":
        await db(do_progress)(job.id, progress=30, eta_seconds=4.0)
    elif state == "complete":
        await db(do_complete)(job.id, image_name="j/x.png", seed=1, info={})
    elif state == "error":
        await db(do_fail)(job.id, code="forge_timeout", detail="raw")
    elif state == "canceled":
        await db(do_cancel)(job.id)

    cookie = await _cookie(client, alice)
    page = (await db(client.get)(f"/conversations/{conversation.id}/")).content.decode()
    socket = _socket(conversation.id, cookie)
    await socket.connect()
    await socket.send_json_to({"sync": [str(job.id)]})
    pushed = await _receive_card(socket, job.id)
    assert _cards(page)[str(job.id)] == pushed
    assert f'data-status="{state}"' in pushed
    assert "raw" not in pushed
    await socket.disconnect()


async def test_a_turkish_page_gets_turkish_cards_over_the_socket(client, alice):
    conversation = await db(make_conversation)(alice)
    job = await db(request_picture)(conversation, "kedi")
    socket = await open_socket(
        client, alice, conversation.id, **{"accept-language": b"tr-TR,tr;q=0.9,en;q=0.5"}
    )
    card = await _receive_card(socket, job.id)
    assert "Sırada #1" in card
    assert "İptal et" in card
    await socket.disconnect()


async def test_a_page_showing_the_latest_messages_gets_only_their_cards(client, alice, bob):
    """A long conversation's page shows a window (`?from=` its oldest
    message): cards of older messages are neither sent on connect nor
    pushed when they change, until the page loads them (`{"from": id}`)."""
    from chat.models import Message

    conversation = await db(make_conversation)(alice)
    old = await db(request_picture)(conversation, "an old fox")
    new = await db(request_picture)(conversation, "a new owl")
    first_shown = await db(lambda: Message.objects.get(image_job=new).id)()
    socket = browser_socket(
        f"/ws/conversations/{conversation.id}/?from={first_shown}", await _cookie(client, alice)
    )
    assert (await socket.connect())[0]
    assert set(_cards(await socket.receive_from(timeout=3))) == {str(new.id)}

    async def frames() -> str:
        received = ""
        while not await socket.receive_nothing(timeout=0.5):
            received += await socket.receive_from()
        return received

    # The old picture starts, then is canceled; the queue moves each time.
    await db(request_picture)(await db(make_conversation)(bob), "bob's cat")
    assert (await db(do_claim_next)("gpu-1")).id == old.id
    await db(do_cancel)(old.id)
    sent = await frames()
    assert f"place-{new.id.hex}" in sent, "the shown card's place is pushed"
    assert old.id.hex not in sent
    assert str(old.id) not in sent

    # The page loaded the older messages: their cards are live too.
    await socket.send_to(text_data=f'{{"from": "{await db(lambda: old.message_id)()}"}}')
    await socket.send_to(text_data=f'{{"sync": ["{old.id}"]}}')
    assert "Canceled" in await _receive_card(socket, old.id)
    await socket.disconnect()


async def test_a_window_start_that_is_not_this_conversations_message_shows_everything(
    client, alice, bob
):
    conversation = await db(make_conversation)(alice)
    job = await db(request_picture)(conversation, "a fox")
    elsewhere = await db(request_picture)(await db(make_conversation)(bob), "bob's owl")
    for start in (str(elsewhere.message_id), "not-an-id"):
        socket = browser_socket(
            f"/ws/conversations/{conversation.id}/?from={start}", await _cookie(client, alice)
        )
        assert (await socket.connect())[0]
        assert str(job.id) in _cards(await socket.receive_from(timeout=3))
        await socket.disconnect()
