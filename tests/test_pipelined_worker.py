"""The pipelined worker: while one picture is stored and completed, the
next is already drawing, and nothing of the failure model weakens."""

import threading

import pytest

from imagejobs import claim_ahead
from imagejobs.actions import check_cancel
from imagejobs.models import ImageJob, JobTransition, Status
from imagejobs.positions import snapshot
from imagejobs.worker import Worker
from tests.helpers import make_conversation, request_picture, runworker_process, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _completions(job: ImageJob) -> int:
    return JobTransition.objects.filter(job=job, to_status=Status.COMPLETE).count()


def test_the_next_picture_is_claimed_before_the_last_one_is_stored(alice, forge, settings):
    conversation = make_conversation(alice)
    first = request_picture(conversation, "a red fox", steps=20)
    second = request_picture(conversation, "a grey owl", steps=20)
    worker = Worker(forge.url, worker_id="gpu-pipe", pipelined=True)
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


@pytest.fixture
def quick_polls(forge, settings) -> None:  # type: ignore[no-untyped-def]
    """Steps and progress polls of 50 ms: a claim ahead within a test's time."""
    settings.FORGE_PROGRESS_INTERVAL = 0.05
    forge.seconds_per_step = 0.05


def _run_in_thread(worker: Worker, **kwargs: object) -> threading.Thread:
    thread = threading.Thread(target=worker.run, kwargs=kwargs)
    thread.start()
    return thread


def _draining(forge) -> threading.Thread:  # type: ignore[no-untyped-def]
    """A worker drawing until nothing is queued."""
    return _run_in_thread(Worker(forge.url, worker_id="gpu-ahead", pipelined=True), until_idle=True)


def _finished(thread: threading.Thread) -> None:
    thread.join(timeout=60)
    assert not thread.is_alive()


def _log(job: ImageJob) -> list[tuple[str, str]]:
    return list(job.transitions.values_list("to_status", "reason"))


def _status(job: ImageJob) -> str:
    return ImageJob.objects.values_list("status", flat=True).get(pk=job.pk)


def test_the_next_job_is_claimed_while_the_gpu_still_draws(alice, forge, quick_polls):
    """No claim stands between two pictures: the next job is claimed in the
    last moments of the one before, and its run is timed from its start."""
    conversation = make_conversation(alice)
    first = request_picture(conversation, "a red fox", steps=20)
    second = request_picture(conversation, "a grey owl", steps=4)
    _finished(_draining(forge))

    generations = {prompt: (start, end) for prompt, start, end in forge.stats.generations}
    first_ended = generations["a red fox"][1]
    claimed = JobTransition.objects.get(job=second, to_status=Status.PROCESSING).at.timestamp()
    assert claimed < first_ended, "claimed while the GPU drew the picture before"
    assert first_ended - claimed < claim_ahead.CLAIM_AHEAD_SECONDS + 0.5, "but only just"
    for job in (first, second):
        job.refresh_from_db()
        assert job.status == Status.COMPLETE
        assert _completions(job) == 1
    assert second.started_at.timestamp() >= first_ended - 0.01, "timed from its start"
    assert forge.stats.max_concurrent_generations == 1


def test_stopping_hands_back_the_job_claimed_ahead_behind_the_one_drawing(
    alice, forge, quick_polls, monkeypatch
):
    monkeypatch.setattr(claim_ahead, "CLAIM_AHEAD_SECONDS", 60.0)  # from the first poll
    conversation = make_conversation(alice)
    first = request_picture(conversation, "a red fox", steps=400)
    second = request_picture(conversation, "a grey owl", steps=4)
    third = request_picture(conversation, "a white hare", steps=4)
    worker = Worker(forge.url, worker_id="gpu-ahead", pipelined=True)
    thread = _run_in_thread(worker)
    wait_for(lambda: _status(second) == Status.PROCESSING)
    assert _status(first) == Status.PROCESSING

    worker.stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    for job in (first, second):
        assert _log(job)[-1] == (Status.QUEUED, "worker stopping")
    queue = snapshot()
    assert [queue.position(job.id) for job in (first, second, third)] == [1, 2, 3]
    wait_for(lambda: forge.stats.interrupted == 1)  # the fox, stopped
    assert forge.stats.txt2img_requests == 1, "the one claimed ahead never reached Forge"


def test_a_job_canceled_while_claimed_ahead_is_canceled_and_the_queue_goes_on(
    alice, forge, quick_polls, monkeypatch
):
    monkeypatch.setattr(claim_ahead, "CLAIM_AHEAD_SECONDS", 60.0)
    conversation = make_conversation(alice)
    first = request_picture(conversation, "a red fox", steps=40)
    second = request_picture(conversation, "a grey owl", steps=40)
    third = request_picture(conversation, "a white hare", steps=4)
    thread = _draining(forge)
    wait_for(lambda: _status(second) == Status.PROCESSING)
    assert _status(first) == Status.PROCESSING
    check_cancel(alice, second.id)
    _finished(thread)

    assert [_status(job) for job in (first, second, third)] == [
        Status.COMPLETE,
        Status.CANCELED,
        Status.COMPLETE,
    ]
    assert forge.stats.prompts_completed == ["a red fox", "a white hare"]


def test_a_job_claimed_ahead_goes_back_to_the_head_if_the_picture_before_outlasts_its_hold(
    alice, forge, quick_polls, monkeypatch
):
    """A Forge slow to finish (its estimate was wrong) must not keep a
    claimed job, shown as drawing, out of the queue for long."""
    monkeypatch.setattr(claim_ahead, "CLAIM_AHEAD_SECONDS", 60.0)
    monkeypatch.setattr(claim_ahead, "CLAIM_AHEAD_HOLD_SECONDS", 0.3)
    conversation = make_conversation(alice)
    first = request_picture(conversation, "a red fox", steps=30)
    second = request_picture(conversation, "a grey owl", steps=4)
    _finished(_draining(forge))

    assert _log(second) == [
        (Status.QUEUED, "requested"),
        (Status.PROCESSING, "claimed"),
        (Status.QUEUED, "the picture before it took longer than Forge expected"),
        (Status.PROCESSING, "claimed"),
        (Status.COMPLETE, "image stored"),
    ]
    assert _status(first) == Status.COMPLETE
    assert forge.stats.prompts_completed == ["a red fox", "a grey owl"]


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
