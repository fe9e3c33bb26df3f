"""The chat pages over HTTP: what a user sees, and that bad input changes nothing."""

import pytest

from chat.models import Conversation, Message
from imagejobs.models import ImageJob, Status
from imagejobs.transitions import do_claim_next, do_progress
from imagejobs.worker import Worker
from tests.helpers import HTMX, counts, make_conversation, request_picture

pytestmark = pytest.mark.django_db(transaction=True)


def test_pages_need_a_login(client, alice):
    conversation = make_conversation(alice)
    for url in ("/conversations/", f"/conversations/{conversation.id}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_starting_a_conversation_with_a_picture_request(client, alice):
    client.force_login(alice)
    response = client.post("/conversations/new/", {"text": "draw a cat"})
    conversation = Conversation.objects.get(owner=alice)
    assert response.status_code == 302
    assert response["Location"] == f"/conversations/{conversation.id}/"
    assert conversation.title == "cat", "titled after what to draw, not the command"
    page = client.get(response["Location"]).content.decode()
    assert "draw a cat" in page
    assert "#1 in line" in page
    job = ImageJob.objects.get()
    assert job.prompt == "cat"
    assert job.message.role == Message.Role.ASSISTANT
    assert f'ws-connect="/ws/conversations/{conversation.id}/"' in page


def test_an_htmx_picture_request_returns_the_message_pair_and_the_queued_card(client, alice):
    conversation = make_conversation(alice)
    client.force_login(alice)
    response = client.post(
        f"/conversations/{conversation.id}/messages/", {"text": "/image a red fox"}, **HTMX
    )
    assert response.status_code == 200
    html = response.content.decode()
    job = ImageJob.objects.get()
    user_message, answer = Message.objects.filter(conversation=conversation)
    assert job.message_id == answer.id
    assert f'id="message-{user_message.id}"' in html
    assert f'id="message-{answer.id}"' in html
    assert f'id="job-{job.id}"' in html
    assert "#1 in line" in html
    assert html.index("/image a red fox") < html.index(f"job-{job.id}")


def test_the_first_message_names_the_conversation_on_the_open_page(client, alice):
    """The heading, the tab's title, the sidebar and the rename field said
    "New conversation": the answer to the first message renames them all,
    and the messages after it leave them alone."""
    conversation = Conversation.objects.create(owner=alice)
    client.force_login(alice)
    url = f"/conversations/{conversation.id}/messages/"
    page = client.get(f"/conversations/{conversation.id}/").content.decode()
    assert '<h1 id="conversation-heading" class="conversation__title">New conversation</h1>' in page
    assert f'id="sidebar-{conversation.id.hex}"' in page

    html = client.post(url, {"text": "/image a red fox"}, **HTMX).content.decode()
    assert "<title>a red fox · mami</title>" in html
    assert (
        '<h1 id="conversation-heading" class="conversation__title" hx-swap-oob="true">'
        "a red fox</h1>"
    ) in html
    assert f'id="sidebar-{conversation.id.hex}"' in html
    assert 'id="conversation-title" name="title" value="a red fox"' in html

    again = client.post(url, {"text": "/image a grey owl"}, **HTMX).content.decode()
    assert "hx-swap-oob" not in again
    assert "<title>" not in again


def test_three_quick_requests_get_three_distinct_places(client, alice):
    conversation = make_conversation(alice)
    client.force_login(alice)
    places = []
    for _ in range(3):
        html = client.post(
            f"/conversations/{conversation.id}/messages/", {"text": "/image a red fox"}, **HTMX
        ).content.decode()
        places.append(next(f"#{n} in line" for n in (1, 2, 3) if f"#{n} in line" in html))
    assert places == ["#1 in line", "#2 in line", "#3 in line"]


def test_a_chat_message_gets_a_reply_that_explains_how_to_ask_for_pictures(client, alice):
    conversation = make_conversation(alice)
    client.force_login(alice)
    html = client.post(
        f"/conversations/{conversation.id}/messages/", {"text": "hello"}, **HTMX
    ).content.decode()
    assert "/image" in html
    assert not ImageJob.objects.exists()
    assert Message.objects.filter(conversation=conversation).count() == 2


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "Write a message first."),
        ("   ", "Write a message first."),
        ("/image", "Write what to draw after /image"),
        ("/image " + "fox " * 300, "at most 1000 characters"),
        ("x" * 4001, "at most 4000 characters"),
    ],
)
def test_bad_input_gets_a_readable_400_and_changes_nothing(client, alice, text, error):
    conversation = make_conversation(alice)
    client.force_login(alice)
    before = counts()
    response = client.post(f"/conversations/{conversation.id}/messages/", {"text": text}, **HTMX)
    assert response.status_code == 400
    assert response["HX-Retarget"] == "#composer-errors"
    assert error in response.content.decode()
    assert counts() == before
    # Without htmx: the whole page, the error, and the text kept in the box.
    page = client.post(f"/conversations/{conversation.id}/messages/", {"text": text})
    assert page.status_code == 400
    assert error in page.content.decode()
    assert counts() == before


def test_bad_first_message_does_not_create_a_conversation(client, alice):
    client.force_login(alice)
    response = client.post("/conversations/new/", {"text": "/image"})
    assert response.status_code == 400
    assert "Write what to draw after /image" in response.content.decode()
    assert counts() == (0, 0, 0)


def test_another_users_conversation_is_404_and_untouched(client, alice, bob):
    conversation = make_conversation(alice)
    request_picture(conversation, "a secret fox")
    client.force_login(bob)
    before = counts()
    assert client.get(f"/conversations/{conversation.id}/").status_code == 404
    response = client.post(
        f"/conversations/{conversation.id}/messages/", {"text": "/image mine now"}, **HTMX
    )
    assert response.status_code == 404
    assert counts() == before
    assert "a secret fox" not in client.get("/conversations/").content.decode()


def test_a_malformed_conversation_id_is_404(client, alice):
    client.force_login(alice)
    assert client.get("/conversations/not-a-uuid/").status_code == 404


def test_the_image_is_served_to_its_owner_only(client, alice, bob, forge):
    job = request_picture(make_conversation(alice), "a red fox", steps=3)
    Worker(forge.url).step()
    client.force_login(alice)
    response = client.get(f"/jobs/{job.id}/image/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    client.force_login(bob)
    assert client.get(f"/jobs/{job.id}/image/").status_code == 404


def test_a_reload_shows_every_card_as_the_database_has_it(client, alice, forge):
    conversation = make_conversation(alice)
    done = request_picture(conversation, "finished fox", steps=3)
    Worker(forge.url).step()
    running = request_picture(conversation, "running fox")
    waiting = request_picture(conversation, "waiting fox")
    assert do_claim_next("gpu-1").id == running.id
    do_progress(running.id, progress=42, eta_seconds=7.0)
    client.force_login(alice)
    page = client.get(f"/conversations/{conversation.id}/").content.decode()
    assert f'src="/jobs/{done.id}/image/' in page
    assert 'data-status="processing"' in page
    assert "42%" in page
    assert "about 7 seconds left" in page
    assert "#1 in line" in page
    waiting.refresh_from_db()
    assert waiting.status == Status.QUEUED


def test_the_turkish_page_speaks_turkish(client, alice):
    conversation = make_conversation(alice)
    request_picture(conversation, "kedi")
    client.force_login(alice)
    page = client.get(
        f"/conversations/{conversation.id}/", HTTP_ACCEPT_LANGUAGE="tr"
    ).content.decode()
    assert '<html lang="tr">' in page


def _long_conversation(owner, count: int) -> Conversation:
    """`count` chat messages, one a second, the oldest first; a queued
    picture among the oldest."""
    from datetime import timedelta

    from django.utils import timezone

    conversation = make_conversation(owner)
    old_picture = request_picture(conversation, "an old fox")
    start = timezone.now()
    Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role="user",
            text=f"message number {n:05d}",
            created_at=start + timedelta(seconds=n),
        )
        for n in range(count)
    )
    assert old_picture.status == Status.QUEUED
    return conversation


def _page(client, conversation):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/conversations/{conversation.id}/")
    assert response.status_code == 200
    return response.content.decode(), len(queries)


def test_a_long_conversation_shows_its_latest_messages_and_loads_older_ones(client, alice):
    client.force_login(alice)
    conversation = _long_conversation(alice, 120)
    page, _queries = _page(client, conversation)
    assert "message number 00119" in page
    assert "message number 00070" in page
    assert "message number 00069" not in page
    assert "an old fox" not in page
    assert "Load older messages" in page
    first_shown = Message.objects.get(text="message number 00070")
    assert f"?from={first_shown.id}" in page, "the socket sends only the shown cards"

    older = client.get(f"/conversations/{conversation.id}/older/?before={first_shown.id}")
    assert older.status_code == 200
    body = older.content.decode()
    assert "message number 00069" in body
    assert "message number 00020" in body
    assert "message number 00070" not in body
    assert "message number 00019" not in body
    next_first = Message.objects.get(text="message number 00020")
    last = client.get(f"/conversations/{conversation.id}/older/?before={next_first.id}")
    body = last.content.decode()
    # The oldest: the picture request, its card as it is now, and no more to load.
    assert "message number 00000" in body
    assert "an old fox" in body
    assert "in line" in body
    assert "Load older messages" not in body


def test_a_conversations_page_costs_the_same_whatever_its_length(client, alice):
    client.force_login(alice)
    short_page, short_queries = _page(client, _long_conversation(alice, 60))
    long_page, long_queries = _page(client, _long_conversation(alice, 2000))
    assert long_queries == short_queries
    # Same window, same size (ids and numbers aside).
    assert abs(len(long_page) - len(short_page)) < 200


def test_loading_older_messages_refuses_what_is_not_there(client, alice, bob):
    client.force_login(alice)
    conversation = _long_conversation(alice, 60)
    elsewhere = request_picture(make_conversation(bob), "bob's owl").message
    url = f"/conversations/{conversation.id}/older/"
    assert client.get(url).status_code == 400
    assert client.get(f"{url}?before=nonsense").status_code == 400
    assert client.get(f"{url}?before={elsewhere.id}").status_code == 404
    client.force_login(bob)
    first = Message.objects.filter(conversation=conversation).last()
    assert client.get(f"{url}?before={first.id}").status_code == 404
