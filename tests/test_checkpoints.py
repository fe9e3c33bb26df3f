"""Knowing the models: each worker reads its Forge's checkpoints onto its
row; what can be chosen is what a live worker offers."""

from datetime import timedelta

import pytest
from django.utils import timezone

from imagejobs import checkpoints, workers
from imagejobs.models import WorkerState
from imagejobs.worker import Worker
from tests.helpers import dead_worker, free_port, sim_control

pytestmark = pytest.mark.django_db(transaction=True)


def _started(worker_id: str, forge_url: str) -> Worker:
    worker = Worker(forge_url, worker_id=worker_id)
    workers.register(worker_id, forge_url)
    worker.read_checkpoints()
    return worker


def test_a_worker_records_what_its_forge_has_and_draws_with(forge):
    worker = _started("gpu-a", forge.url)
    row = WorkerState.objects.get(pk="gpu-a")
    assert [c["model_name"] for c in row.checkpoints] == [
        "mami-sim",
        "anime_mami-anime",
        "mami-photo",
    ]
    assert row.loaded_checkpoint == "mami-sim"
    assert row.checkpoints_read_at is not None

    sim_control(forge, loaded="mami-photo")
    worker.read_checkpoints()
    assert WorkerState.objects.get(pk="gpu-a").loaded_checkpoint == "mami-photo"


def test_a_forge_that_does_not_answer_leaves_the_record_as_it_was(forge):
    _started("gpu-a", forge.url)
    gone = Worker(f"http://127.0.0.1:{free_port()}", worker_id="gpu-a")
    gone.read_checkpoints()
    assert WorkerState.objects.get(pk="gpu-a").loaded_checkpoint == "mami-sim"


def test_what_can_be_chosen_is_what_a_live_worker_offers(forge):
    _started("gpu-a", forge.url)
    dead_worker(
        "gpu-dead",
        quiet_for=timedelta(hours=1),
        checkpoints=[
            {"title": "x.safetensors [0123456789]", "model_name": "x", "hash": "0123456789"}
        ],
    )
    assert checkpoints.choosable() == ["anime_mami-anime", "mami-photo", "mami-sim"]
    assert checkpoints.resolve("mami-photo") == "mami-photo"
    assert checkpoints.resolve("anime/mami-anime.safetensors [a71e3b9c40]") == "anime_mami-anime"
    assert checkpoints.resolve("9f0c2d7e55") == "mami-photo"
    assert checkpoints.resolve("x") is None, "only a dead worker has it"
    assert checkpoints.resolve("no-such-model") is None
    assert checkpoints.resolve("") is None


def test_a_worker_whose_row_was_deleted_records_its_checkpoints_again(forge, settings):
    import threading
    import time

    settings.MAMI_WORKER_HEARTBEAT_SECONDS = 0.05
    settings.MAMI_SWEEP_INTERVAL = 0.05
    worker = _started("gpu-a", forge.url)
    WorkerState.objects.all().delete()  # staff, or a test's teardown
    beating = threading.Thread(target=worker._beat, daemon=True)
    beating.start()
    try:
        deadline = timezone.now() + timedelta(seconds=10)
        while not WorkerState.objects.filter(pk="gpu-a").exclude(checkpoints=[]).exists():
            assert timezone.now() < deadline, "the row came back without its checkpoints"
            time.sleep(0.02)
    finally:
        worker.stop.set()
        beating.join(timeout=5)
    assert checkpoints.choosable() == ["anime_mami-anime", "mami-photo", "mami-sim"]
