"""Finding things again: titles from the request, the sidebar, rename and
delete, search, and the gallery with links to each picture's message."""

import os

import pytest

from chat.actions import post_message
from chat.history import WINDOW
from chat.intents import ImageRequest
from chat.models import Conversation, Message
from imagejobs.models import ImageJob, Status
from imagejobs.worker import Worker
from tests.helpers import HTMX, make_conversation, request_picture

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_conversation_is_titled_after_the_request_without_the_command(client, alice):
    client.force_login(alice)
    client.post("/conversations/new/", {"text": "/image   a lighthouse\nat dusk"})
    client.post("/conversations/new/", {"text": "draw a cat on a roof"})
    client.post("/conversations/new/", {"text": "hello there"})
    titles = set(Conversation.objects.values_list("title", flat=True))
    assert titles == {"a lighthouse at dusk", "cat on a roof", "hello there"}


def test_the_sidebar_lists_the_users_conversations_newest_first(client, alice, bob):
    older = make_conversation(alice)
    post_message(older, "first", None)
    newer = make_conversation(alice)
    post_message(newer, "second", None)
    post_message(make_conversation(bob), "bob's own", None)
    client.force_login(alice)
    page = client.get(f"/conversations/{older.id}/").content.decode()
    sidebar = page[
        page.index('class="sidebar__list"') : page.index("</ul>", page.index("sidebar__list"))
    ]
    assert sidebar.index(str(newer.id)) < sidebar.index(str(older.id))
    assert f'href="/conversations/{older.id}/" aria-current="page"' in sidebar
    assert "bob&#x27;s own" not in sidebar


def test_rename(client, alice, bob):
    conversation = make_conversation(alice)
    client.force_login(alice)
    answer = client.post(f"/conversations/{conversation.id}/rename/", {"title": "  Fox  ideas "})
    assert answer.status_code == 302
    conversation.refresh_from_db()
    assert conversation.title == "Fox ideas"
    for bad, error in (("   ", "Write a title"), ("x" * 121, "at most 120 characters")):
        answer = client.post(f"/conversations/{conversation.id}/rename/", {"title": bad})
        assert answer.status_code == 400
        assert error in answer.content.decode()
        conversation.refresh_from_db()
        assert conversation.title == "Fox ideas"
    client.force_login(bob)
    answer = client.post(f"/conversations/{conversation.id}/rename/", {"title": "mine"})
    assert answer.status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "Fox ideas"


def test_delete_cancels_the_waiting_pictures_and_removes_the_files(
    client, alice, bob, forge, settings
):
    conversation = make_conversation(alice)
    done = request_picture(conversation, "a finished fox", steps=2)
    Worker(forge.url, worker_id="gpu-test").step()
    done.refresh_from_db()
    path = done.image.path
    waiting = request_picture(conversation, "a waiting fox")
    others = request_picture(make_conversation(bob), "bob's fox")

    client.force_login(bob)
    assert client.post(f"/conversations/{conversation.id}/delete/", **HTMX).status_code == 404
    client.force_login(alice)
    answer = client.post(f"/conversations/{conversation.id}/delete/", **HTMX)
    assert answer.status_code == 200
    assert answer["HX-Redirect"] == "/conversations/"
    assert not Conversation.objects.filter(pk=conversation.id).exists()
    assert not ImageJob.objects.filter(pk__in=[done.id, waiting.id]).exists()
    assert not Message.objects.filter(conversation_id=conversation.id).exists()
    assert not os.path.exists(path), "the picture file is gone"
    others.refresh_from_db()
    assert others.status == Status.QUEUED


def test_search_finds_conversations_by_title_or_message(client, alice, bob):
    foxes = make_conversation(alice)
    post_message(foxes, "/image a red fox", ImageRequest("a red fox"))
    cats = make_conversation(alice)
    post_message(cats, "tell me about cats", None)
    post_message(cats, "and a FOX too", None)
    post_message(make_conversation(bob), "bob's fox", None)
    client.force_login(alice)
    page = client.get("/conversations/?q=fox").content.decode()
    assert str(foxes.id) in page
    assert str(cats.id) in page
    assert "bob" not in page.split("Your conversations")[1]
    page = client.get("/conversations/?q=zebra").content.decode()
    assert "No conversation mentions “zebra”." in page


def test_the_gallery_pages_and_filters_the_users_pictures(client, alice, bob, forge, settings):
    conversation = make_conversation(alice)
    for n in range(3):
        request_picture(conversation, f"fox number {n}", steps=2)
    request_picture(make_conversation(bob), "bob's owl", steps=2)
    worker = Worker(forge.url, worker_id="gpu-test")
    while worker.step():
        pass
    client.force_login(alice)
    page = client.get("/conversations/gallery/").content.decode()
    assert page.index("fox number 2") < page.index("fox number 1") < page.index("fox number 0")
    assert "owl" not in page
    job = ImageJob.objects.get(prompt="fox number 1")
    link = f"/conversations/{conversation.id}/?at={job.message_id}#message-{job.message_id}"
    assert link in page
    page = client.get("/conversations/gallery/?q=NUMBER 1").content.decode()
    assert "fox number 1" in page
    assert "fox number 2" not in page
    assert client.get("/conversations/gallery/?page=999").status_code == 200


def test_a_link_to_an_old_message_shows_the_conversation_from_there(client, alice):
    conversation = make_conversation(alice)
    first, _answer = post_message(conversation, "the very first message", None)
    for n in range(WINDOW):
        post_message(conversation, f"later {n}", None)
    client.force_login(alice)
    latest = client.get(f"/conversations/{conversation.id}/").content.decode()
    assert "the very first message" not in latest
    linked = client.get(f"/conversations/{conversation.id}/?at={first.id}").content.decode()
    assert f'id="message-{first.id}"' in linked
    assert "later 49" in linked
    for bad in ("nonsense", "00000000-0000-0000-0000-000000000000"):
        page = client.get(f"/conversations/{conversation.id}/?at={bad}")
        assert page.status_code == 200, "an unknown message shows the latest"
