"""Real `runworker` processes: killed with SIGKILL mid-job, or stopped with
SIGTERM, the queue loses nothing and never runs a job twice at once."""

import itertools
import signal
import time

import pytest

from imagejobs.models import ImageJob, Status
from tests.helpers import drawing, make_conversation, request_picture, sim_control, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _assert_never_held_twice(job: ImageJob) -> None:
    """In the job's log every stretch in processing ends before the next begins."""
    inside = False
    for from_status, to_status in job.transitions.values_list("from_status", "to_status"):
        if to_status == Status.PROCESSING and from_status != Status.PROCESSING:
            assert not inside, "claimed again while still processing"
            inside = True
        elif from_status == Status.PROCESSING and to_status != Status.PROCESSING:
            inside = False


def _assert_no_overlapping_generations(forge) -> None:
    generations = sorted(sim_control(forge)["stats"]["generations"], key=lambda g: g[1])
    for (_p1, _s1, end), (_p2, start, _e2) in itertools.pairwise(generations):
        assert start >= end - 1e-3, "two generations ran on Forge at once"


@pytest.mark.parametrize("successor", ["another worker", "the same worker restarted"])
def test_a_killed_worker_loses_no_job(alice, forge, spawn_worker, successor):
    forge.seconds_per_step = 0.05
    conversation = make_conversation(alice)
    jobs = [request_picture(conversation, f"fox {n}", steps=30) for n in range(3)]
    first = spawn_worker("gpu-a")
    wait_for(lambda: drawing(jobs[0]))
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=5)
    assert ImageJob.objects.get(pk=jobs[0].pk).status == Status.PROCESSING

    spawn_worker("gpu-b" if successor == "another worker" else "gpu-a")
    wait_for(lambda: ImageJob.objects.filter(status=Status.COMPLETE).count() == 3)

    victim = ImageJob.objects.get(pk=jobs[0].pk)
    assert victim.recoveries == 1
    log = list(victim.transitions.values_list("to_status", "reason"))
    assert log[:3] == [
        ("queued", "requested"),
        ("processing", "claimed"),
        ("queued", "recovered from lost worker gpu-a"),
    ]
    assert log[-1][0] == "complete"
    for job in ImageJob.objects.all():
        _assert_never_held_twice(job)
        assert job.transitions.filter(to_status=Status.COMPLETE).count() == 1
    _assert_no_overlapping_generations(forge)


def test_sigterm_hands_the_job_back_and_exits_within_ten_seconds(alice, forge, spawn_worker):
    forge.seconds_per_step = 0.05
    conversation = make_conversation(alice)
    waiting = request_picture(conversation, "waiting fox", steps=2)
    ImageJob.objects.filter(pk=waiting.pk).update(priority=0)
    job = request_picture(conversation, "long fox", steps=400)
    # The long one goes first.
    ImageJob.objects.filter(pk=job.pk).update(priority=5)
    worker = spawn_worker("gpu-term")
    wait_for(lambda: drawing(job))

    stopped_at = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert time.monotonic() - stopped_at < 10

    job.refresh_from_db()
    assert job.status == Status.QUEUED
    assert job.transitions.last().reason == "worker stopping"
    from imagejobs.queue import snapshot

    assert snapshot().position(job.id) == 1, "back at the head of the queue"
    wait_for(lambda: sim_control(forge)["stats"]["interrupted"] == 1, timeout=5)
