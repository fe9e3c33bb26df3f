"""The chat model is shared fairly: the next reply written is that of the
user with the fewest being written, one user's flood waits behind itself,
limits bound it (a form error that keeps the text), and a reply waiting
for its turn is neither failed as orphaned nor kept from a Stop."""

import time
import uuid

import pytest

from chat import reply_runner
from chat.models import Message, Reply
from chat.reply_runner import FairLine
from chat.reply_writer import fail_orphaned_replies
from tests.helpers import HTMX, make_conversation, sim_control, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ALICE, BOB, CAROL = 1, 2, 3


def test_the_line_takes_the_user_with_fewest_being_written_then_the_longest_waiting():
    line = FairLine()
    ids = {name: [uuid.uuid4() for _ in range(4)] for name in ("a", "b", "c")}
    for message_id in ids["a"]:
        line.put(ALICE, message_id)
    assert line.take() == (ALICE, ids["a"][0])
    assert line.take() == (ALICE, ids["a"][1])
    line.put(BOB, ids["b"][0])
    line.put(CAROL, ids["c"][0])
    line.put(BOB, ids["b"][1])
    # alice has two being written; bob and carol none: bob asked first.
    assert line.take() == (BOB, ids["b"][0])
    assert line.take() == (CAROL, ids["c"][0])
    # All at one now except alice at two: bob's next before alice's third.
    assert line.take() == (BOB, ids["b"][1])
    line.done(ALICE)
    line.done(ALICE)
    assert line.take() == (ALICE, ids["a"][2])
    assert line.remove(ids["a"][3])
    assert not line.remove(ids["a"][3])
    assert line.waiting_ids() == []
    for owner in (ALICE, BOB, BOB, CAROL):
        line.done(owner)
    assert line.idle


def _say(client, conversation, text: str):  # type: ignore[no-untyped-def]
    return client.post(f"/conversations/{conversation.id}/messages/", {"text": text}, **HTMX)


def test_one_users_flood_waits_behind_itself(client, alice, bob, chat_sim, settings):
    settings.MAMI_MAX_REPLIES_IN_FLIGHT = 0
    settings.MAMI_MAX_REPLIES_PER_MINUTE = 0
    # Slow replies (about 8 s): every thread stays busy with alice's while
    # the test posts, however loaded the machine.
    sim_control(chat_sim, tokens_per_second=4)
    theirs = make_conversation(alice)
    mine = make_conversation(bob)
    client.force_login(alice)
    for n in range(3 * settings.CHAT_REPLY_WORKERS):
        assert _say(client, theirs, f"alice talks, number {n}").status_code == 200

    def asked() -> list[str]:
        return [str(request["messages"][-1]) for request in sim_control(chat_sim)["requests"]]

    # Every thread has taken one of alice's before bob asks.
    wait_for(lambda: len(asked()) >= settings.CHAT_REPLY_WORKERS, timeout=10)
    client.force_login(bob)
    assert _say(client, mine, "bob asks once").status_code == 200
    # Counted once his message is in line: from then on a thread that
    # frees takes bob's, not the rest of alice's (one of hers taken just
    # before may reach the model a moment after the count).
    started = len(asked())
    wait_for(lambda: any("bob asks once" in text for text in asked()), timeout=30)
    lasts = asked()
    before_bob = lasts[: next(n for n, text in enumerate(lasts) if "bob asks once" in text)]
    assert len(before_bob) <= started + 1, before_bob
    assert len(before_bob) < 3 * settings.CHAT_REPLY_WORKERS
    sim_control(chat_sim, tokens_per_second=500)
    reply_runner.wait_idle(60)
    assert set(Reply.objects.values_list("state", flat=True)) == {"done"}


def test_replies_in_flight_are_limited_with_a_form_error_that_keeps_the_text(
    client, alice, chat_sim, settings
):
    settings.MAMI_MAX_REPLIES_IN_FLIGHT = 2
    sim_control(chat_sim, tokens_per_second=10)
    conversation = make_conversation(alice)
    client.force_login(alice)
    for n in range(2):
        assert _say(client, conversation, f"first {n}").status_code == 200
    stored = Message.objects.count()
    answer = _say(client, conversation, "one too many")
    assert answer.status_code == 400
    page = answer.content.decode()
    assert "still writing 2 replies for you" in page
    assert Message.objects.count() == stored, "nothing written"
    # The composer keeps the text: the refusal only fills the error slot.
    assert answer["HX-Retarget"] == "#composer-errors"
    reply_runner.wait_idle()
    assert _say(client, conversation, "one too many").status_code == 200


def test_replies_per_minute_are_limited_too(client, alice, chat_sim, settings):
    settings.MAMI_MAX_REPLIES_IN_FLIGHT = 0
    settings.MAMI_MAX_REPLIES_PER_MINUTE = 3
    sim_control(chat_sim, tokens_per_second=200)
    conversation = make_conversation(alice)
    client.force_login(alice)
    for n in range(3):
        assert _say(client, conversation, f"quick {n}").status_code == 200
    answer = _say(client, conversation, "a fourth")
    assert answer.status_code == 400
    assert "You sent the chat model 3 messages within a minute" in answer.content.decode()
    reply_runner.wait_idle()


def _one_waiting(client, alice, chat_sim, settings, tokens_per_second: float) -> Message:  # type: ignore[no-untyped-def]
    """Every writer thread busy with alice's replies, and one more of hers
    waiting for its turn: that one."""
    settings.MAMI_MAX_REPLIES_IN_FLIGHT = 0
    sim_control(chat_sim, tokens_per_second=tokens_per_second)
    conversation = make_conversation(alice)
    client.force_login(alice)
    for n in range(settings.CHAT_REPLY_WORKERS + 1):
        assert _say(client, conversation, f"busy {n}").status_code == 200
    return Message.objects.filter(role="assistant").latest("created_at")


def test_a_reply_waiting_its_turn_is_not_failed_as_orphaned(client, alice, chat_sim, settings):
    """Before, a reply that waited longer than the orphan window failed with
    "interrupted": 89 of alice's 300 did, and bob's with them."""
    settings.CHAT_MODEL_TIMEOUT = 0.5  # the window: 0.5 + 2 x 0.2 + 5 s
    last = _one_waiting(client, alice, chat_sim, settings, tokens_per_second=3.5)
    wait_for(lambda: Reply.objects.filter(saved_at__gt=last.reply.saved_at).exists())
    time.sleep(6.5)
    assert Reply.objects.get(pk=last.pk).state == "writing"
    assert Message.objects.get(pk=last.pk).text == "", "still waiting for its turn"
    assert fail_orphaned_replies() == 0
    reply_runner.wait_idle(60)
    assert Reply.objects.get(pk=last.pk).state == "done"


def test_stop_ends_a_waiting_reply_at_once_without_asking_the_model(
    client, alice, chat_sim, settings
):
    waiting = _one_waiting(client, alice, chat_sim, settings, tokens_per_second=5)
    answer = client.post(f"/conversations/replies/{waiting.pk}/stop/", **HTMX)
    assert answer.status_code == 200
    wait_for(lambda: Reply.objects.get(pk=waiting.pk).state == "stopped", timeout=3)
    asked = [str(request["messages"][-1]) for request in sim_control(chat_sim)["requests"]]
    assert not any(f"busy {settings.CHAT_REPLY_WORKERS}" in text for text in asked)
    reply_runner.wait_idle(60)
