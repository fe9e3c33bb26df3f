"""The pipelined worker: while one picture is stored and completed, the
next is already drawing, and nothing of the failure model weakens."""

import threading

import pytest

from imagejobs.models import ImageJob, JobTransition, Status
from imagejobs.worker import Worker
from tests.helpers import make_conversation, request_picture, runworker_process, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _completions(job: ImageJob) -> int:
    return JobTransition.objects.filter(job=job, to_status=Status.COMPLETE).count()


def test_the_next_picture_is_claimed_before_the_last_one_is_stored(alice, forge, settings):
    conversation = make_conversation(alice)
    first = request_picture(conversation, "a red fox", steps=20)
    second = request_picture(conversation, "a grey owl", steps=20)
    worker = Worker(forge.url, worker_id="gpu-pipe")
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True})
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()

    for job in (first, second):
        job.refresh_from_db()
        assert job.status == Status.COMPLETE
        assert _completions(job) == 1, "completed exactly once"
        assert (settings.MEDIA_ROOT / job.image.name).is_file()
    assert forge.stats.completed == 2, "each drawn once"
    stored = JobTransition.objects.get(job=first, to_status=Status.COMPLETE).at
    claimed = JobTransition.objects.get(job=second, to_status=Status.PROCESSING).at
    assert claimed < stored, "the GPU got the next picture before the last was stored"


def test_a_crash_between_a_drawn_picture_and_its_storing_recovers_both(alice, forge, settings):
    """The worker dies with one picture drawn but not yet stored (a slow
    disk) and the next one drawing: after a restart both are drawn again
    and complete, each once."""
    conversation = make_conversation(alice)
    first = request_picture(conversation, "a red fox", steps=20)
    second = request_picture(conversation, "a grey owl", steps=200)
    crashing = runworker_process(
        "gpu-crash",
        forge.url,
        media_root=settings.MEDIA_ROOT,
        DJANGO_SETTINGS_MODULE="tests.slow_storage_settings",
        MAMI_TEST_SAVE_SECONDS="60",
    )
    try:
        # The first is drawn (the disk holds its picture up), the second drawing.
        wait_for(lambda: forge.stats.completed == 1)
        wait_for(
            lambda: (
                ImageJob.objects.filter(
                    pk__in=[first.pk, second.pk], status=Status.PROCESSING, worker_id="gpu-crash"
                ).count()
                == 2
            )
        )
    finally:
        crashing.kill()
        crashing.wait(timeout=10)
    restarted = runworker_process("gpu-crash", forge.url, media_root=settings.MEDIA_ROOT)
    try:
        wait_for(
            lambda: (
                ImageJob.objects.filter(
                    pk__in=[first.pk, second.pk], status=Status.COMPLETE
                ).count()
                == 2
            ),
            timeout=60,
        )
    finally:
        restarted.terminate()
        restarted.wait(timeout=30)
    for job in (first, second):
        job.refresh_from_db()
        assert _completions(job) == 1
        assert job.recoveries == 1, "handed back once, by the restart"
        assert (settings.MEDIA_ROOT / job.image.name).is_file()
