"""A worker lost while drawing (killed, crashed, its box gone) is an
infrastructure fault: the job goes back to the head of the queue up to
MAMI_MAX_RECOVERIES times, and its card says it was started again."""

import pytest
from django.utils import translation

from imagejobs import queue, sweeps
from imagejobs.cards import render_card
from imagejobs.errors import ErrorCode
from imagejobs.models import Status
from imagejobs.transitions import do_claim_next
from tests.helpers import make_conversation, request_picture

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
        assert queue.snapshot().position(job.id) == 1, "back at the head of the queue"
    _lose_the_worker()
    job.refresh_from_db()
    assert job.status == Status.ERROR
    assert job.error_code == ErrorCode.WORKER_LOST
    assert "stopped while drawing" in job.error_message
    assert "4 times" in job.error_detail


def test_the_card_says_the_picture_was_started_again(alice):
    job = request_picture(make_conversation(alice), "a lighthouse")
    _lose_the_worker()
    _lose_the_worker()
    job.refresh_from_db()
    english = render_card(job, queue.snapshot())
    assert "Started again 2 times after the image worker stopped." in english
    with translation.override("tr"):
        turkish = render_card(job, queue.snapshot())
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
    card = render_card(claimed, queue.snapshot())
    assert "Attempt 3 of 3" in card
    assert "Attempt 6" not in card
