"""Real `runworker` processes: killed with SIGKILL mid-job, or stopped with
SIGTERM, the queue loses nothing and never runs a job twice at once."""

import itertools
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from django.db.models import Sum
from django.utils import timezone

from imagejobs.models import ImageJob, Status
from tests.helpers import (
    ROOT,
    SHORT_WORKER_SETTINGS,
    database_url,
    drawing,
    free_port,
    make_conversation,
    request_picture,
    sim_control,
    stop_processes,
    wait_for,
)

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
    from imagejobs.positions import snapshot

    assert snapshot().position(job.id) == 1, "back at the head of the queue"
    wait_for(lambda: sim_control(forge)["stats"]["interrupted"] == 1, timeout=5)


def _embedded_server(port: int, forge_url: str, media_root: str, log) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    """The embedded topology as `scripts/run` starts it (Daphne, the worker
    in its process), on the test database and the test's Forge."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": "",
        "MAMI_EMBEDDED_WORKER": "1",
        "FORGE_URL": forge_url,
        "MEDIA_ROOT": media_root,
        **SHORT_WORKER_SETTINGS,
        # A restart must take over at once, not after the liveness window.
        "MAMI_WORKER_DEAD_AFTER_SECONDS": "30",
        "FORGE_PROGRESS_INTERVAL": "0.05",
    }
    daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    return subprocess.Popen(
        [*daphne, "mami.asgi:application"], cwd=ROOT, env=env, stdout=log, stderr=log
    )


def _wake(port: int) -> None:
    """The embedded worker starts with the server's first request."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("the embedded server did not come up")


def test_the_embedded_server_killed_and_restarted_five_times_loses_no_job(
    alice, forge, settings, tmp_path
):
    forge.seconds_per_step = 0.02
    conversation = make_conversation(alice)
    jobs = [request_picture(conversation, f"owl {n}", steps=20) for n in range(30)]
    port = free_port()
    log = (tmp_path / "server.log").open("ab")
    servers = []
    try:
        for _kill in range(5):
            started = timezone.now()
            servers.append(_embedded_server(port, forge.url, str(settings.MEDIA_ROOT), log))
            _wake(port)
            # Killed while drawing a job this server claimed after finishing
            # one (the job its predecessor held goes first): a new victim
            # each time.
            wait_for(
                lambda started=started: (
                    ImageJob.objects.filter(
                        status=Status.COMPLETE, finished_at__gt=started
                    ).exists()
                    and ImageJob.objects.filter(
                        status=Status.PROCESSING, progress__gt=0, started_at__gt=started
                    ).exists()
                )
            )
            servers[-1].send_signal(signal.SIGKILL)
            servers[-1].wait(timeout=5)
        servers.append(_embedded_server(port, forge.url, str(settings.MEDIA_ROOT), log))
        _wake(port)
        wait_for(
            lambda: ImageJob.objects.filter(status=Status.COMPLETE).count() == len(jobs),
            timeout=90,
        )
    finally:
        stop_processes(*servers, timeout=15)
    assert not ImageJob.objects.exclude(status=Status.COMPLETE).exists()
    # Each restart took over the job its predecessor was drawing, and the
    # one it had claimed to draw after it if it had, in that order: each
    # kill took a new victim.
    recoveries = ImageJob.objects.aggregate(n=Sum("recoveries"))["n"]
    assert 5 <= recoveries <= 10
    assert not ImageJob.objects.filter(recoveries__gt=2).exists()
    for job in ImageJob.objects.all():
        _assert_never_held_twice(job)
        assert job.transitions.filter(to_status=Status.COMPLETE).count() == 1
    _assert_no_overlapping_generations(forge)
