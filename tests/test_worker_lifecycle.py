"""Every way of running a worker has one lifecycle: it registers, beats and
sweeps, so other workers and the cards know it is alive."""

import threading

import pytest
from django.core.management import call_command

from imagejobs.cards import render_card
from imagejobs.models import ImageJob, Status, WorkerState
from imagejobs.positions import snapshot
from imagejobs.worker import Worker
from simulators.forge import ForgeSimulator
from tests.helpers import (
    closing,
    make_conversation,
    request_picture,
    sim_control,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

NO_WORKER = "No image worker is running"


def test_drain_processes_the_queue_and_exits(alice, forge):
    conversation = make_conversation(alice)
    for n in range(2):
        request_picture(conversation, f"fox {n}", steps=4)
    call_command("runworker", "--forge-url", forge.url, "--drain", "--worker-id", "gpu-cli")
    assert list(ImageJob.objects.values_list("status", "worker_id")) == [
        (Status.COMPLETE, "gpu-cli"),
        (Status.COMPLETE, "gpu-cli"),
    ]
    # It said goodbye like any worker does.
    assert WorkerState.objects.get(pk="gpu-cli").stopped_at is not None


def test_a_drain_worker_beside_a_normal_one_draws_each_job_once(
    alice, forge, spawn_worker, settings
):
    settings.MAMI_WORKER_HEARTBEAT_SECONDS = 0.2
    settings.MAMI_WORKER_DEAD_AFTER_SECONDS = 1.5
    settings.MAMI_SWEEP_INTERVAL = 0.3
    forge.seconds_per_step = 0.05
    conversation = make_conversation(alice)
    long_job = request_picture(conversation, "a long fox", steps=40)
    drain = spawn_worker("gpu-drain", "--drain")
    wait_for(lambda: ImageJob.objects.get(pk=long_job.pk).status == Status.PROCESSING)

    # While the drain worker draws, a waiting card knows a worker is running.
    waiting = request_picture(conversation, "a waiting owl", steps=4)
    waiting.refresh_from_db()
    assert NO_WORKER not in render_card(waiting, snapshot())

    # A normal worker on its own GPU starts (and sweeps) meanwhile: it must
    # not take the drain worker's job for an orphan.
    other_forge = ForgeSimulator(seconds_per_step=0.01).start()
    stop = threading.Event()
    normal = Worker(other_forge.url, worker_id="gpu-normal", stop=stop, pipelined=True)
    thread = threading.Thread(target=closing(normal.run))
    thread.start()
    try:
        wait_for(lambda: not ImageJob.objects.exclude(status=Status.COMPLETE).exists())
        assert drain.wait(timeout=15) == 0, drain.stderr.read().decode()
        drawn = [
            *sim_control(forge)["stats"]["prompts_completed"],
            *sim_control(other_forge)["stats"]["prompts_completed"],
        ]
    finally:
        stop.set()
        thread.join(timeout=15)
        other_forge.stop()

    assert sorted(drawn) == ["a long fox", "a waiting owl"], "each job drawn exactly once"
    long_job.refresh_from_db()
    assert long_job.worker_id == "gpu-drain"
    assert long_job.recoveries == 0
    assert long_job.transitions.filter(reason="claimed").count() == 1
