"""Replies from the chat model, over real HTTP to the chat-model simulator:
streamed to the page, saved as they grow, stopped, failed readably,
retried, and a request to draw turned into the same job `/image` makes."""

import html
import io
import json
import re
import time

import pytest
from channels.db import database_sync_to_async as db
from django.utils import translation

from chat import reply_runner
from chat.actions import post_message
from chat.models import Message, Reply
from chat.reply_writer import fail_orphaned_replies
from imagejobs.models import ImageJob, Status
from simulators.chat_model import reply_to
from tests.helpers import HTMX, free_port, make_conversation, open_socket, sim_control, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _say(client, conversation, text: str) -> Message:
    answer = client.post(f"/conversations/{conversation.id}/messages/", {"text": text}, **HTMX)
    assert answer.status_code == 200, answer.content
    return Message.objects.filter(conversation=conversation, role="assistant").latest("created_at")


def _page(client, conversation) -> str:
    return client.get(f"/conversations/{conversation.id}/").content.decode()


def test_a_reply_is_written_off_the_request_saved_as_it_grows_and_shown_on_reload(
    client, alice, chat_sim
):
    conversation = make_conversation(alice)
    client.force_login(alice)
    message = _say(client, conversation, "hello there")
    full = reply_to("hello there")
    # The request answered at once, with the reply still to come.
    assert Reply.objects.get(pk=message.pk).state in {"writing", "done"}
    # A reload mid-reply shows the text so far, and Stop.
    wait_for(lambda: len(Message.objects.get(pk=message.pk).text) > 10)
    page = _page(client, conversation)
    so_far = Message.objects.get(pk=message.pk).text
    if Reply.objects.get(pk=message.pk).state == "writing":
        assert full.startswith(so_far)
        assert so_far != full
        assert ">Stop</button>" in page
    reply_runner.wait_idle()
    reply = Reply.objects.get(pk=message.pk)
    assert (reply.state, Message.objects.get(pk=message.pk).text) == ("done", full)
    assert reply.version > 3, "saved as it grew, not only at the end"
    page = _page(client, conversation)
    assert "You wrote: “hello there”" in page
    assert ">Stop</button>" not in page
    assert 'placeholder="Write to mami, or ask for a picture: /image a red fox"' in page
    # What the model was shown: who it is, then the conversation.
    sent = chat_sim.describe()["requests"][-1]
    assert sent["messages"][0]["role"] == "system"
    assert "in the language the user writes in" in sent["messages"][0]["content"]
    assert sent["messages"][-1] == {"role": "user", "content": "hello there"}
    assert sent["stream"] is True
    assert sent["tools"][0]["function"]["name"] == "draw_picture"


async def _reply_texts(socket) -> list[str]:
    """The texts of the reply each push showed, until it was done."""
    texts = []
    while True:
        frame = await socket.receive_from(timeout=5)
        found = re.search(
            r'<li id="message-[^"]+"[^>]*data-reply="(\w+)"[^>]*>(.*?)</li>', frame, re.S
        )
        if not found:
            continue
        text = re.search(r'class="message__text">(.*?)</p>', found[2], re.S)
        texts.append(html.unescape(text[1]) if text else "")
        if found[1] == "done":
            return texts


@pytest.mark.asyncio
async def test_every_tab_of_the_owner_sees_the_reply_grow_in_order_and_no_one_else(
    client, alice, bob, chat_sim
):
    conversation = await db(make_conversation)(alice)
    tabs = [await open_socket(client, alice, conversation.id) for _ in range(2)]
    others = await open_socket(client, bob, (await db(make_conversation)(bob)).id)
    await db(post_message)(conversation, "hello there", None)
    full = reply_to("hello there")
    for tab in tabs:
        texts = await _reply_texts(tab)
        assert texts[-1] == full
        assert len(texts) > 5, "word by word, not all at once"
        assert all(full.startswith(text) for text in texts), "in order"
        await tab.disconnect()
    assert await others.receive_nothing(timeout=0.3)
    await others.disconnect()


def test_stop_keeps_what_was_written(client, alice, chat_sim):
    sim_control(chat_sim, tokens_per_second=10)
    conversation = make_conversation(alice)
    client.force_login(alice)
    message = _say(client, conversation, "hello there")
    wait_for(lambda: len(Message.objects.get(pk=message.pk).text) > 5)
    answer = client.post(f"/conversations/replies/{message.pk}/stop/", **HTMX)
    assert answer.status_code == 200
    assert "Stopping…" in answer.content.decode()
    reply_runner.wait_idle()
    reply = Reply.objects.get(pk=message.pk)
    text = Message.objects.get(pk=message.pk).text
    assert reply.state == "stopped"
    assert text
    assert reply_to("hello there").startswith(text)
    assert text != reply_to("hello there")
    page = _page(client, conversation)
    assert "Stopped." in page
    assert ">Retry</button>" in page
    # Stopping again: a readable refusal, nothing changes.
    again = client.post(f"/conversations/replies/{message.pk}/stop/", **HTMX)
    assert again.status_code == 400
    assert Reply.objects.get(pk=message.pk).version == reply.version


def test_stop_ends_a_reply_at_once_even_while_the_model_is_silent(client, alice, chat_sim):
    sim_control(chat_sim, fault="hang", fault_after=3)
    conversation = make_conversation(alice)
    client.force_login(alice)
    message = _say(client, conversation, "hello there")
    # Three words, then the model says nothing more.
    wait_for(lambda: Message.objects.get(pk=message.pk).text.startswith("Happy"))
    time.sleep(0.3)
    asked = time.monotonic()
    answer = client.post(f"/conversations/replies/{message.pk}/stop/", **HTMX)
    assert answer.status_code == 200, answer.content
    assert Reply.objects.get(pk=message.pk).stop_requested_at is not None
    wait_for(lambda: Reply.objects.get(pk=message.pk).state == "stopped", timeout=3)
    assert time.monotonic() - asked < 1.5, "not after the model's timeout"
    assert Message.objects.get(pk=message.pk).text == "Happy to help."


@pytest.mark.parametrize(
    ("knob", "code", "english", "turkish"),
    [
        ({"fault": "http500"}, "chat_refused", "refused the request", "isteği reddetti"),
        ({"fault": "unauthorized"}, "chat_refused", "refused the request", "isteği reddetti"),
        ({"fault": "malformed", "fault_after": 2}, "chat_broken", "cut off or garbled", "yarım"),
        ({"fault": "cut", "fault_after": 3}, "chat_broken", "cut off or garbled", "yarım"),
    ],
)
def test_each_failure_is_readable_in_both_languages_and_retry_works(
    client, alice, chat_sim, knob, code, english, turkish
):
    sim_control(chat_sim, **knob)
    conversation = make_conversation(alice)
    client.force_login(alice)
    message = _say(client, conversation, "hello there")
    reply_runner.wait_idle()
    reply = Reply.objects.get(pk=message.pk)
    assert (reply.state, reply.error_code) == ("failed", code)
    page = _page(client, conversation)
    assert english in page
    assert ">Retry</button>" in page
    with translation.override("tr"):
        assert turkish in reply.error_text
    sim_control(chat_sim, fault="")
    answer = client.post(f"/conversations/replies/{message.pk}/retry/", **HTMX)
    assert answer.status_code == 200
    reply_runner.wait_idle()
    retried = Reply.objects.exclude(pk=message.pk).get()
    assert retried.state == "done"
    assert retried.answering_id == reply.answering_id


def test_an_unreachable_or_silent_model_fails_without_blocking_pictures(
    client, alice, chat_sim, settings, forge
):
    settings.CHAT_MODEL_TIMEOUT = 0.5
    conversation = make_conversation(alice)
    client.force_login(alice)
    sim_control(chat_sim, fault="hang", fault_after=2)
    hung = _say(client, conversation, "hello there")
    # Meanwhile a picture is queued as always.
    client.post(f"/conversations/{conversation.id}/messages/", {"text": "/image a fox"}, **HTMX)
    assert ImageJob.objects.get().status == Status.QUEUED
    reply_runner.wait_idle()
    assert Reply.objects.get(pk=hung.pk).error_code == "chat_timeout"
    settings.CHAT_MODEL_URL = f"http://127.0.0.1:{free_port()}/v1"
    gone = _say(client, conversation, "hello again")
    reply_runner.wait_idle()
    assert Reply.objects.get(pk=gone.pk).error_code == "chat_unreachable"
    assert "could not be reached" in _page(client, conversation)


@pytest.mark.parametrize(
    ("said", "prompt"),
    [
        ("bana gün batımında bir deniz feneri çizer misin?", "a lighthouse at sunset"),
        ("can you make me a picture of my cat as a pirate", "my cat as a pirate"),
    ],
)
def test_the_model_draws_with_an_english_prompt_and_the_users_words_kept(
    client, alice, chat_sim, said, prompt
):
    conversation = make_conversation(alice)
    client.force_login(alice)
    message = _say(client, conversation, said)
    reply_runner.wait_idle()
    job = ImageJob.objects.get()
    assert (job.message_id, job.prompt, job.asked_as) == (message.pk, prompt, said)
    assert job.status == Status.QUEUED
    assert Reply.objects.get(pk=message.pk).state == "done"
    page = _page(client, conversation)
    assert f"You asked: “{said}”".replace("'", "&#x27;") in page
    assert Message.objects.get(pk=message.pk).text == f"Drawing “{prompt}”."
    assert f'title="{prompt}"' in page


def test_a_tool_call_with_bad_arguments_fails_readably(client, alice, chat_sim):
    sim_control(chat_sim, fault="bad_tool_args")
    conversation = make_conversation(alice)
    client.force_login(alice)
    message = _say(client, conversation, "draw me a cat")
    reply_runner.wait_idle()
    assert Reply.objects.get(pk=message.pk).error_code == "chat_bad_tool_call"
    assert not ImageJob.objects.exists()
    assert "asked for a picture in a way mami could not read" in _page(client, conversation)


def test_without_a_chat_model_the_rules_answer_as_before(client, alice, settings):
    settings.CHAT_MODEL_URL = ""
    conversation = make_conversation(alice)
    client.force_login(alice)
    message = _say(client, conversation, "hello there")
    assert message.text.startswith("I can draw pictures for you.")
    assert not Reply.objects.exists()
    _say(client, conversation, "/image a fox")
    assert ImageJob.objects.get().prompt == "a fox"


def test_only_the_owner_may_stop_or_retry_a_reply(client, alice, bob, chat_sim):
    conversation = make_conversation(alice)
    client.force_login(alice)
    message = _say(client, conversation, "hello there")
    client.force_login(bob)
    for action in ("stop", "retry"):
        assert client.post(f"/conversations/replies/{message.pk}/{action}/").status_code == 404
    reply_runner.wait_idle()
    assert Reply.objects.count() == 1


def _orphan(conversation, *, quiet_for: float) -> Message:
    """A reply left writing by a writer that died, last saved `quiet_for` ago."""
    from datetime import timedelta

    from django.utils import timezone

    asked = Message.objects.create(
        conversation=conversation, role="user", text="hi", created_at=timezone.now()
    )
    message = Message.objects.create(
        conversation=conversation, role="assistant", text="Hel", created_at=timezone.now()
    )
    Reply.objects.create(
        message=message, answering=asked, saved_at=timezone.now() - timedelta(seconds=quiet_for)
    )
    return message


def test_a_reply_whose_writer_died_fails_with_a_retry_from_the_workers_sweep(
    alice, settings, forge
):
    from imagejobs.worker import Worker

    conversation = make_conversation(alice)
    settings.CHAT_MODEL_TIMEOUT = 10
    settings.MAMI_SWEEP_INTERVAL = 0
    # Quiet for less than the model's timeout: its writer may be waiting.
    waiting = _orphan(conversation, quiet_for=5)
    dead = _orphan(conversation, quiet_for=300)
    Worker(forge.url, worker_id="gpu-test").maybe_sweep()
    assert Reply.objects.get(pk=waiting.pk).state == "writing"
    reply = Reply.objects.get(pk=dead.pk)
    assert (reply.state, reply.error_code) == ("failed", "chat_interrupted")
    assert Message.objects.get(pk=dead.pk).text == "Hel", "what was written stays"
    assert fail_orphaned_replies() == 0


def test_the_cron_sweep_fails_a_dead_writers_reply_too(alice, settings):
    from django.core.management import call_command

    conversation = make_conversation(alice)
    settings.CHAT_MODEL_TIMEOUT = 10
    dead = _orphan(conversation, quiet_for=300)
    out = io.StringIO()
    call_command("sweepjobs", stdout=out)
    reply = Reply.objects.get(pk=dead.pk)
    assert (reply.state, reply.error_code) == ("failed", "chat_interrupted")
    assert "orphaned replies failed: 1" in out.getvalue()


@pytest.mark.asyncio
async def test_a_page_that_reconnects_sees_the_dead_writers_reply_failed(client, alice):
    conversation = await db(make_conversation)(alice)
    dead = await db(_orphan)(conversation, quiet_for=300)
    socket = await open_socket(client, alice, conversation.id)
    try:
        frame = await socket.receive_from(timeout=5)
        shown = re.search(rf'<li id="message-{dead.pk}"[^>]*data-reply="(\w+)"', frame)
        assert shown, frame
        assert shown[1] == "failed"
        assert "Retry" in frame
    finally:
        await socket.disconnect()
    assert (await db(Reply.objects.get)(pk=dead.pk)).state == "failed"


def test_a_picture_the_model_draws_uses_the_model_picked_in_the_composer(
    client, alice, chat_sim, forge
):
    from imagejobs import workers
    from imagejobs.worker import Worker

    workers.register("gpu-test", forge.url)
    Worker(forge.url, worker_id="gpu-test").read_checkpoints()
    conversation = make_conversation(alice)
    client.force_login(alice)
    url = f"/conversations/{conversation.id}/messages/"
    answer = client.post(url, {"text": "draw me a cat", "model": "mami-photo"}, **HTMX)
    assert answer.status_code == 200
    reply_runner.wait_idle()
    job = ImageJob.objects.get()
    assert (job.prompt, job.model, job.model_source) == ("a cat", "mami-photo", "chosen")
    # A model no worker offers is refused before anything is written.
    refused = client.post(url, {"text": "hello", "model": "sdxl"}, **HTMX)
    assert refused.status_code == 400
    assert "There is no model “sdxl”" in refused.content.decode()
    assert Reply.objects.count() == 1


@pytest.mark.asyncio
async def test_a_reconnecting_page_gets_the_replies_it_shows_unfinished(client, alice):
    from django.utils import timezone

    def finished_reply() -> Message:
        conversation = make_conversation(alice)
        asked = Message.objects.create(
            conversation=conversation, role="user", text="hi", created_at=timezone.now()
        )
        message = Message.objects.create(
            conversation=conversation,
            role="assistant",
            text="Hello, all of it.",
            created_at=timezone.now(),
        )
        Reply.objects.create(
            message=message, answering=asked, state="done", version=7, saved_at=timezone.now()
        )
        return message

    message = await db(finished_reply)()
    socket = await open_socket(client, alice, message.conversation_id)
    assert await socket.receive_nothing(timeout=0.2), "nothing is being written"
    await socket.send_to(text_data=json.dumps({"replies": [str(message.pk)]}))
    frame = await socket.receive_from(timeout=3)
    assert f'id="message-{message.pk}"' in frame
    assert 'data-reply="done"' in frame
    assert "Hello, all of it." in frame
    await socket.disconnect()


def test_what_mami_adds_to_a_reply_is_in_the_language_asked_in(client, alice, chat_sim):
    conversation = make_conversation(alice)
    client.force_login(alice)
    answer = client.post(
        f"/conversations/{conversation.id}/messages/",
        {"text": "kedi çiz"},
        HTTP_ACCEPT_LANGUAGE="tr",
        **HTMX,
    )
    assert answer.status_code == 200
    reply_runner.wait_idle()
    message = Message.objects.get(role="assistant")
    assert Reply.objects.get().language == "tr"
    assert message.text == "“cat” çiziliyor."


def test_a_picture_the_model_draws_with_automatic_picked_follows_the_routing_rules(
    client, alice, chat_sim, forge
):
    from imagejobs import checkpoints, workers
    from imagejobs.models import ModelRoute
    from imagejobs.worker import Worker

    workers.register("gpu-test", forge.url)
    Worker(forge.url, worker_id="gpu-test").read_checkpoints()
    ModelRoute.objects.create(order=1, words="cat", model="mami-anime")
    conversation = make_conversation(alice)
    client.force_login(alice)
    url = f"/conversations/{conversation.id}/messages/"
    # The conversation's last choice is mami-photo, chosen in the picker...
    client.post(url, {"text": "draw me a dog", "model": "mami-photo"}, **HTMX)
    reply_runner.wait_idle()
    # ... and this time the user picks "Automatic": the rules decide.
    client.post(url, {"text": "draw me a cat", "model": ""}, **HTMX)
    reply_runner.wait_idle()
    cat = ImageJob.objects.get(prompt="a cat")
    assert (cat.model, cat.model_source) == (checkpoints.resolve("mami-anime"), "rule")
    assert cat.model != ImageJob.objects.get(prompt="a dog").model


@pytest.mark.asyncio
async def test_the_writers_pushes_never_paint_stop_back_over_stopping(client, alice, chat_sim):
    """A page shows a push unless it is older (version) than what it
    shows; after Stop it shows the Stop answer's "Stopping…"."""
    await db(sim_control)(chat_sim, tokens_per_second=25)
    conversation = await db(make_conversation)(alice)
    socket = await open_socket(client, alice, conversation.id)
    await db(post_message)(conversation, "hello there", None)
    element = re.compile(r'<li id="message-([^"]+)"[^>]*data-reply="(\w+)" data-version="(\d+)"')
    while True:  # a few words are shown
        frame = await socket.receive_from(timeout=5)
        if (found := element.search(frame)) and 'class="message__text">' in frame:
            message_id = found[1]
            break
    answer = await db(client.post)(f"/conversations/replies/{message_id}/stop/", **HTMX)
    page = answer.content.decode()
    assert "Stopping…" in page
    shown = int(element.search(page)[3])
    while True:
        frame = await socket.receive_from(timeout=5)
        found = element.search(frame)
        if not found or int(found[3]) < shown:
            continue  # the page keeps the newer one it shows
        shown = int(found[3])
        assert ">Stop</button>" not in frame, "Stop painted back over Stopping…"
        if found[2] == "stopped":
            break
    await socket.disconnect()


def test_a_nul_from_the_model_is_dropped_not_a_failed_save(client, alice, chat_sim):
    """PostgreSQL cannot store NUL: every save of such a reply failed."""
    sim_control(chat_sim, reply="half\x00 a reply \x00from a broken model")
    conversation = make_conversation(alice)
    client.force_login(alice)
    message = _say(client, conversation, "hello")
    reply_runner.wait_idle()
    assert Reply.objects.get(pk=message.pk).state == "done"
    assert Message.objects.get(pk=message.pk).text == "half a reply from a broken model"


def test_a_tool_calls_nul_is_dropped_from_the_prompt():
    from chat.reply_writer import _picture_parameters

    parameters = _picture_parameters(
        json.dumps({"prompt": "a c\x00at", "negative_prompt": "bl\x00ur"})
    )
    assert (parameters["prompt"], parameters["negative_prompt"]) == ("a cat", "blur")
