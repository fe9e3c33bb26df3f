"""The worker against the Forge simulator over real HTTP: serial, stores
real PNGs, reports progress, and moves on after a failure."""

import io
import itertools
import threading
import time

import pytest
from PIL import Image

from imagejobs.models import ImageJob, Status
from imagejobs.worker import Worker
from tests.helpers import closing, make_conversation, request_picture, sim_control

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_runs_three_jobs_one_after_another(alice, forge):
    conversation = make_conversation(alice)
    jobs = [request_picture(conversation, "a red fox", steps=8) for _ in range(3)]
    worker = Worker(forge.url, worker_id="gpu-test")
    assert [worker.step() for _ in range(3)] == [True, True, True]
    assert worker.step() is False

    for job in jobs:
        job.refresh_from_db()
    assert [job.status for job in jobs] == [Status.COMPLETE] * 3
    # Serial: each job started only after the previous one finished.
    for before, after in itertools.pairwise(jobs):
        assert after.started_at >= before.finished_at
    for job in jobs:
        with job.image.open("rb") as stored:
            picture = Image.open(io.BytesIO(stored.read()))
            assert picture.format == "PNG"
            assert picture.size == (job.width, job.height)
        assert job.result_seed is not None
        assert job.result_info["sd_model_name"] == "mami-sim"
        assert job.worker_id == "gpu-test"
        assert job.progress == 100
    assert len({job.result_seed for job in jobs}) == 3, "seed -1 means a new random seed"
    stats = sim_control(forge)["stats"]
    assert stats["completed"] == 3
    assert stats["max_concurrent_generations"] == 1


def test_progress_reaches_the_database_while_forge_draws(alice, forge, settings):
    settings.MAMI_PROGRESS_WRITE_INTERVAL = 0.1
    forge.seconds_per_step = 0.05
    job = request_picture(make_conversation(alice), "a slow fox", steps=30)
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            progress = ImageJob.objects.filter(pk=job.pk).values_list("progress", flat=True)[0]
            if not seen or seen[-1] != progress:
                seen.append(progress)
            time.sleep(0.05)

    watcher = threading.Thread(target=closing(watch))
    watcher.start()
    Worker(forge.url).step()
    done.set()
    watcher.join()
    partial = [p for p in seen if 0 < p < 100]
    assert len(partial) >= 3, f"progress seen: {seen}"
    assert partial == sorted(partial), "progress never goes backwards"
    job.refresh_from_db()
    assert job.status == Status.COMPLETE


def test_the_running_loop_picks_up_new_jobs_until_stopped(alice, forge):
    conversation = make_conversation(alice)
    worker = Worker(forge.url, pipelined=True)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        jobs = [request_picture(conversation, f"fox {n}", steps=4) for n in range(3)]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not ImageJob.objects.exclude(status=Status.COMPLETE).exists():
                break
            time.sleep(0.05)
    finally:
        worker.stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
    assert {job.status for job in ImageJob.objects.filter(pk__in=[j.pk for j in jobs])} == {
        Status.COMPLETE
    }
