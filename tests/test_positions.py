"""Queue positions are derived from the database: unique, 1 = next, and the
same across every user's conversations."""

import pytest

from imagejobs import queue
from imagejobs.transitions import do_cancel, do_claim_next
from tests.helpers import make_conversation, request_picture

pytestmark = pytest.mark.django_db(transaction=True)


def test_positions_follow_arrival_across_interleaved_conversations_and_users(alice, bob):
    alice_a, alice_b, bob_a = (
        make_conversation(alice),
        make_conversation(alice),
        make_conversation(bob),
    )
    order = [
        request_picture(alice_a, "fox 1"),
        request_picture(bob_a, "owl 1"),
        request_picture(alice_b, "cat 1"),
        request_picture(alice_a, "fox 2"),
        request_picture(bob_a, "owl 2"),
    ]
    snapshot = queue.snapshot()
    assert [snapshot.position(job.id) for job in order] == [1, 2, 3, 4, 5]

    # The head starts: everyone behind it moves up by one, in every conversation.
    assert do_claim_next("gpu-1").id == order[0].id
    snapshot = queue.snapshot()
    assert snapshot.position(order[0].id) is None
    assert [snapshot.position(job.id) for job in order[1:]] == [1, 2, 3, 4]

    # A job in the middle leaves: only those behind it move.
    assert do_cancel(order[2].id)
    snapshot = queue.snapshot()
    assert [snapshot.position(job.id) for job in (order[1], order[3], order[4])] == [1, 2, 3]


def test_positions_are_unique_and_contiguous(alice, bob):
    conversations = [make_conversation(alice), make_conversation(bob)]
    for n in range(9):
        request_picture(conversations[n % 2], f"thing {n}")
    do_claim_next("gpu-1")
    positions = sorted(queue.snapshot().positions.values())
    assert positions == list(range(1, 9))


def test_etas_grow_with_the_place_in_line(alice, settings):
    settings.MAMI_DEFAULT_JOB_SECONDS = 10.0
    conversation = make_conversation(alice)
    jobs = [request_picture(conversation, f"fox {n}") for n in range(3)]
    snapshot = queue.snapshot()
    etas = [snapshot.eta_seconds(job.id) for job in jobs]
    assert etas == [10.0, 20.0, 30.0]


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
