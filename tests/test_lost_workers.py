"""A worker lost while drawing (killed, crashed, its box gone) is an
infrastructure fault: the job goes back to the head of the queue up to
MAMI_MAX_RECOVERIES times, and its card says it was started again."""

import re
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async as db
from django.conf import settings
from django.utils import timezone, translation

from imagejobs import positions, sweeps
from imagejobs.cards import render_card
from imagejobs.errors import ErrorCode, user_message
from imagejobs.models import Status, WorkerState
from imagejobs.transitions import do_claim_next, do_complete
from tests.helpers import dead_worker, make_conversation, open_socket, request_picture

pytestmark = pytest.mark.django_db(transaction=True)


def _lose_the_worker() -> None:
    """The job is claimed by a worker with no live row (it died at once)."""
    assert do_claim_next("gpu-gone") is not None
    sweeps.recover_orphaned_jobs()


def test_a_job_survives_three_lost_workers_and_fails_on_the_fourth(alice, settings):
    settings.MAMI_MAX_RECOVERIES = 3
    job = request_picture(make_conversation(alice), "a lighthouse")
    for lost in range(1, 4):
        _lose_the_worker()
        job.refresh_from_db()
        assert (job.status, job.recoveries) == (Status.QUEUED, lost)
        assert positions.snapshot().position(job.id) == 1, "back at the head of the queue"
    _lose_the_worker()
    job.refresh_from_db()
    assert job.status == Status.ERROR
    assert job.error_code == ErrorCode.WORKER_LOST
    with translation.override("en"):
        assert "stopped while drawing" in user_message(job.error_code)
    assert "4 times" in job.error_detail


def test_the_jobs_of_a_lost_worker_go_back_in_the_order_it_took_them(alice):
    """A worker holds the picture it draws and the one it claimed to draw
    next (and one it is still storing): they keep their order."""
    conversation = make_conversation(alice)
    jobs = [request_picture(conversation, f"a lighthouse {n}") for n in range(3)]
    assert do_claim_next("gpu-gone").id == jobs[0].id
    assert do_claim_next("gpu-gone").id == jobs[1].id
    sweeps.recover_orphaned_jobs()
    line = positions.snapshot()
    assert [line.position(job.id) for job in jobs] == [1, 2, 3]


def test_the_card_says_the_picture_was_started_again(alice):
    job = request_picture(make_conversation(alice), "a lighthouse")
    _lose_the_worker()
    _lose_the_worker()
    job.refresh_from_db()
    english = render_card(job, positions.snapshot())
    assert "Started again 2 times after the image worker stopped." in english
    with translation.override("tr"):
        turkish = render_card(job, positions.snapshot())
    assert "Görüntü işleyici durduğu için 2 kez yeniden başlatıldı." in turkish


def test_each_run_gets_its_own_attempts_and_the_card_never_shows_more_than_the_maximum(
    alice, settings
):
    settings.FORGE_MAX_ATTEMPTS = 3
    job = request_picture(make_conversation(alice), "a lighthouse")
    _lose_the_worker()
    claimed = do_claim_next("gpu-2")
    assert claimed.id == job.id
    assert claimed.attempts == 1, "a new run starts with a full budget"
    # Calls to a Forge that is down are retried past the budget.
    claimed.attempts = 6
    card = render_card(claimed, positions.snapshot())
    assert "Attempt 3 of 3" in card
    assert "Attempt 6" not in card


def _claim_on_another_box(job_id) -> None:
    dead_worker("gpu-dead", quiet_for=timedelta(0))
    claimed = do_claim_next("gpu-dead")
    assert claimed is not None
    assert claimed.id == job_id


def _complete_and_die(job_id, monkeypatch) -> None:
    """gpu-dead stores the picture, then dies before its push leaves: the
    after-commit lane never gets the task."""
    from imagejobs import aftercommit

    now = timezone.now()
    with monkeypatch.context() as patched:
        patched.setattr(aftercommit.lane, "submit", lambda task: None)
        assert do_complete(job_id, image_name="x.png", seed=1, info={}, worker_id="gpu-dead")
    WorkerState.objects.filter(pk="gpu-dead").update(
        last_seen=now - timedelta(seconds=settings.MAMI_WORKER_DEAD_AFTER_SECONDS + 1)
    )


@pytest.mark.asyncio
async def test_a_picture_finished_by_a_worker_killed_before_its_push_reaches_the_page(
    client, alice, monkeypatch
):
    conversation = await db(make_conversation)(alice)
    job = await db(request_picture)(conversation, "a lighthouse")
    socket = await open_socket(client, alice, conversation.id)
    assert f'id="job-{job.id}"' in await socket.receive_from(timeout=3)
    await db(_claim_on_another_box)(job.id)
    while 'data-status="processing"' not in await socket.receive_from(timeout=3):
        pass

    await db(_complete_and_die)(job.id, monkeypatch)
    assert await socket.receive_nothing(timeout=0.3), "the push was lost with the worker"

    await db(sweeps.recover_orphaned_jobs)()
    frame = await socket.receive_from(timeout=3)
    assert re.search(rf'id="job-{job.id}"[^>]*data-status="complete"', frame)
    lost = await db(WorkerState.objects.get)(pk="gpu-dead")
    assert lost.lost_at is not None, "the admin sees when it was found lost"

    # Found once: a later sweep pushes nothing again.
    await db(sweeps.recover_orphaned_jobs)()
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()
