"""Queue positions are derived from the database: unique, 1 = next, the
same across every user's conversations, fair between users, and the order
the worker really draws."""

import random
import threading
import time
from datetime import UTC, datetime
from functools import partial

import pytest

from imagejobs import aftercommit, fair_order, positions, workers
from imagejobs.models import ImageJob
from imagejobs.transitions import (
    do_cancel,
    do_claim_next,
    do_complete,
    do_move_to_head,
    do_requeue,
)
from imagejobs.worker import Worker
from tests.helpers import closing, make_conversation, request_picture

pytestmark = pytest.mark.django_db(transaction=True)


def test_users_take_turns_across_interleaved_conversations(alice, bob):
    alice_a, alice_b, bob_a = (
        make_conversation(alice),
        make_conversation(alice),
        make_conversation(bob),
    )
    fox1 = request_picture(alice_a, "fox 1")
    owl1 = request_picture(bob_a, "owl 1")
    cat1 = request_picture(alice_b, "cat 1")
    fox2 = request_picture(alice_a, "fox 2")
    owl2 = request_picture(bob_a, "owl 2")
    snapshot = positions.snapshot()
    # Turn 1: alice, bob (in the order they asked); turn 2 the same; then alice.
    in_line = [fox1, owl1, cat1, owl2, fox2]
    assert [snapshot.position(job.id) for job in in_line] == [1, 2, 3, 4, 5]

    # The head starts: everyone behind it moves up by one, in every conversation.
    assert do_claim_next("gpu-1").id == fox1.id
    snapshot = positions.snapshot()
    assert snapshot.position(fox1.id) is None
    assert [snapshot.position(job.id) for job in in_line[1:]] == [1, 2, 3, 4]

    # Alice cancels her turn-1 job: her next one takes that turn.
    assert do_cancel(cat1.id)
    snapshot = positions.snapshot()
    assert [snapshot.position(job.id) for job in (owl1, fox2, owl2)] == [1, 2, 3]


def test_after_a_flood_another_users_first_picture_is_next_or_second(alice, bob):
    flood = make_conversation(alice)
    for n in range(50):
        request_picture(flood, f"fox {n}")
    do_claim_next("gpu-1")
    owl = request_picture(make_conversation(bob), "owl")
    assert positions.snapshot().position(owl.id) == 1
    # Even before alice's first one started, bob would be second at worst.
    ImageJob.objects.filter(owner=alice).update(started_at=None, status="queued")
    fair_order.rerank_owners([alice.id])
    assert positions.snapshot().position(owl.id) == 2


def test_move_to_head_still_wins_over_the_turns(alice, bob):
    flood = make_conversation(alice)
    jobs = [request_picture(flood, f"fox {n}") for n in range(5)]
    owl = request_picture(make_conversation(bob), "owl")
    assert do_move_to_head(jobs[4].id)
    snapshot = positions.snapshot()
    assert snapshot.position(jobs[4].id) == 1
    # Alice's moved job used her first turn; bob's first turn comes next.
    assert snapshot.position(owl.id) == 2
    assert snapshot.position(jobs[0].id) == 3


@pytest.mark.parametrize("workers", [1, 2])
def test_the_order_shown_is_the_order_drawn_with_three_users_flooding(
    alice, bob, django_user_model, forge, workers
):
    carol = django_user_model.objects.create_user("carol")
    rooms = {user: make_conversation(user) for user in (alice, bob, carol)}
    # Interleaved floods: alice asks for 6, bob for 3 in the middle, carol for 2 late.
    jobs = [request_picture(rooms[alice], f"alice {n}", steps=2) for n in range(3)]
    jobs += [request_picture(rooms[bob], f"bob {n}", steps=2) for n in range(3)]
    jobs += [request_picture(rooms[alice], f"alice {n}", steps=2) for n in range(3, 6)]
    jobs += [request_picture(rooms[carol], f"carol {n}", steps=2) for n in range(2)]
    snapshot = positions.snapshot()
    shown = sorted(jobs, key=lambda job: snapshot.position(job.id))
    assert sorted(snapshot.positions.values()) == list(range(1, len(jobs) + 1))
    assert [job.prompt for job in shown[:6]] == [
        "alice 0", "bob 0", "carol 0", "alice 1", "bob 1", "carol 1",
    ]  # fmt: skip

    gpus = [Worker(forge.url, worker_id=f"gpu-{n}") for n in range(workers)]
    while any([gpu.step() for gpu in gpus]):
        pass
    drawn = list(ImageJob.objects.order_by("started_at").values_list("prompt", flat=True))
    assert drawn == [job.prompt for job in shown]


def test_positions_are_unique_and_contiguous(alice, bob):
    conversations = [make_conversation(alice), make_conversation(bob)]
    for n in range(9):
        request_picture(conversations[n % 2], f"thing {n}")
    do_claim_next("gpu-1")
    places = sorted(positions.snapshot().positions.values())
    assert places == list(range(1, 9))


def test_etas_grow_with_the_place_in_line(alice, settings):
    settings.MAMI_DEFAULT_JOB_SECONDS = 10.0
    conversation = make_conversation(alice)
    jobs = [request_picture(conversation, f"fox {n}") for n in range(3)]
    # No worker runs: nothing will start, so no time is promised.
    assert [positions.snapshot().eta_seconds(job.id) for job in jobs] == [None, None, None]
    workers.register("gpu-1", "http://127.0.0.1:7860")
    snapshot = positions.snapshot()
    etas = [snapshot.eta_seconds(job.id) for job in jobs]
    assert etas == [10.0, 20.0, 30.0]


def test_answers_that_only_show_the_queue_share_its_timings_for_a_moment(alice, settings):
    """A rush of submissions or a thousand sockets reopening read the
    workers and the average once a moment; places are always fresh, and
    whatever reads the facts anew (a worker's push) refreshes them."""
    settings.MAMI_QUEUE_FACTS_SECONDS = 60
    settings.MAMI_DEFAULT_JOB_SECONDS = 10.0
    conversation = make_conversation(alice)
    first = request_picture(conversation, "fox one")
    assert positions.snapshot(only=[first]).no_workers
    workers.register("gpu-1", "http://127.0.0.1:7860")
    second = request_picture(conversation, "fox two")
    shared = positions.snapshot(only=[second], reuse_facts=True)
    # The place is read now; that a worker started is not, yet.
    assert shared.positions == {second.id.hex: 2}
    assert shared.no_workers
    assert shared.eta_seconds(second.id) is None
    fresh = positions.snapshot(only=[second])
    assert not fresh.no_workers
    assert fresh.eta_seconds(second.id) == 20.0
    assert positions.snapshot(only=[second], reuse_facts=True).eta_seconds(second.id) == 20.0
    settings.MAMI_QUEUE_FACTS_SECONDS = 0
    workers.unregister("gpu-1")
    assert positions.snapshot(only=[second], reuse_facts=True).no_workers


def test_the_page_shows_each_card_at_its_position(client, alice, bob):
    alice_conversation, bob_conversation = make_conversation(alice), make_conversation(bob)
    request_picture(bob_conversation, "owl")
    first = request_picture(alice_conversation, "fox one")
    second = request_picture(alice_conversation, "fox two")
    client.force_login(alice)
    page = client.get(f"/conversations/{alice_conversation.id}/").content.decode()
    assert f'id="job-{first.id}"' in page
    assert "#2 in line" in page
    assert "#3 in line" in page
    assert "#1 in line" not in page  # bob's job is first, and it isn't on alice's page
    assert page.index(f"job-{first.id}") < page.index(f"job-{second.id}")


def _fair_order_from_scratch() -> list[object]:
    """The rule of `imagejobs.fair_order`, worked out from the rows alone: what
    the stored keys must always agree with."""
    never = datetime.min.replace(tzinfo=UTC)
    last_started: dict[int, datetime] = {}
    for owner, at in ImageJob.objects.values_list("owner_id", "started_at"):
        if at is not None:
            last_started[owner] = max(at, last_started.get(owner, never))
    waiting = sorted(
        ImageJob.objects.filter(status="queued").values("id", "owner_id", "priority", "created_at"),
        key=lambda job: (-job["priority"], job["created_at"], job["id"]),
    )
    turns: dict[int, int] = {}
    first_asked: dict[int, datetime] = {}
    keys = {}
    for job in waiting:
        owner = job["owner_id"]
        turns[owner] = turns.get(owner, 0) + 1
        first_asked.setdefault(owner, job["created_at"])
        last = last_started.get(owner, never)
        keys[job["id"]] = (
            -job["priority"],
            turns[owner],
            last,
            first_asked[owner],
            owner,
            job["id"],
        )
    return sorted(keys, key=keys.__getitem__)


def test_the_stored_order_never_drifts_from_the_rule(alice, bob, django_user_model):
    """Any mix of requests, starts, cancels, moves, hand-backs, finishes and
    deletions: the order the queue reads from its stored keys is the rule
    worked out from scratch."""
    carol = django_user_model.objects.create_user("carol")
    rooms = [make_conversation(user) for user in (alice, bob, carol, alice)]
    rng = random.Random(9)
    for step in range(80):
        queued = list(ImageJob.objects.filter(status="queued").values_list("id", flat=True))
        drawing = list(ImageJob.objects.filter(status="processing").values_list("id", flat=True))
        action = rng.choice(
            ["ask", "ask", "ask", "claim", "cancel", "head", "back", "done", "delete"]
        )
        if action == "ask" or not queued:
            request_picture(rng.choice(rooms), f"thing {step}")
        elif action == "claim":
            do_claim_next("gpu-1")
        elif action == "cancel":
            do_cancel(rng.choice(queued))
        elif action == "head":
            do_move_to_head(rng.choice(queued))
        elif action == "back" and drawing:
            do_requeue(rng.choice(drawing), reason="worker stopping")
        elif action == "done" and drawing:
            do_complete(rng.choice(drawing), image_name="x.png", seed=1, info={})
        elif action == "delete":
            ImageJob.objects.get(pk=rng.choice(queued)).message.delete()
        # A claim re-ranks its owner just after, off the GPU's path.
        aftercommit.lane.drain()
        in_line = fair_order.queued_ids()
        assert in_line == _fair_order_from_scratch(), f"after step {step}: {action}"
        # A request's answer counts its job's place without reading the queue.
        for job in ImageJob.objects.filter(pk__in=in_line):
            assert fair_order.position_of(job) == in_line.index(job.id) + 1, f"after step {step}"


def test_the_stored_order_is_right_after_concurrent_requests_and_claims(
    alice, bob, django_user_model
):
    """Requests and claims of the same users' jobs from several threads at
    once (several GPUs, several web requests): once they are done, the
    stored order is the rule worked out from scratch."""
    carol = django_user_model.objects.create_user("carol")
    rooms = [make_conversation(user) for user in (alice, bob, carol)]
    for n in range(6):
        request_picture(rooms[n % 3], f"early {n}")

    def asker(room: object) -> None:
        for n in range(6):
            request_picture(room, f"late {n}")

    def gpu(name: str) -> None:
        # Four claims each; the queue may run dry for a moment while the
        # requests come in (a claim then finds nothing, rightly).
        claimed, deadline = 0, time.monotonic() + 30
        while claimed < 4 and time.monotonic() < deadline:
            if do_claim_next(name) is not None:
                claimed += 1
            else:
                time.sleep(0.01)

    threads = [threading.Thread(target=closing(partial(asker, room))) for room in rooms]
    threads += [threading.Thread(target=closing(partial(gpu, f"gpu-{n}"))) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ImageJob.objects.filter(status="processing").count() == 12
    aftercommit.lane.drain()
    assert len(fair_order.queued_ids()) == 12
    assert fair_order.queued_ids() == _fair_order_from_scratch()
