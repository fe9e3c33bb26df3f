"""Storage that refuses a picture (a read-only or full media volume, as a
real mount here): the card says it will be tried again, the picture waits
in the spool, no partial file is left, /metrics counts it, and the job
completes once storage takes it again, or fails readably after a while."""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagejobs import positions
from imagejobs.cards import render_card
from imagejobs.metrics import storage_failures
from imagejobs.models import ImageJob, Status
from imagejobs.worker import Worker
from tests.helpers import make_conversation, request_picture

pytestmark = pytest.mark.django_db(transaction=True)


def _mount(*options: str, target: Path) -> None:
    subprocess.run(["mount", *options, target], check=True, capture_output=True)


@pytest.fixture
def volume(tmp_path: Path, settings) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A media volume of its own (tmpfs, 64 MB) the test can make read-only
    or fill; the worker stores there."""
    mountpoint = tmp_path / "volume"
    mountpoint.mkdir()
    _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", target=mountpoint)
    settings.MEDIA_ROOT = mountpoint
    settings.MAMI_STORAGE_RETRY_SECONDS = 0
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", mountpoint], check=False)


def _files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def test_a_read_only_volume_keeps_the_picture_until_it_is_writable_again(
    alice, forge, volume, settings
):
    conversation = make_conversation(alice)
    job = request_picture(conversation, "a lighthouse", steps=2)
    refused_before = storage_failures._value.get()
    _mount("-o", "remount,ro", target=volume)
    worker = Worker(forge.url, worker_id="gpu-storage")
    assert worker.step()
    job.refresh_from_db()
    assert (job.status, job.error_code) == (Status.PROCESSING, "storage_retrying")
    card = render_card(job, positions.snapshot())
    assert "The server could not store the picture. It will be tried again." in card
    assert storage_failures._value.get() == refused_before + 1
    assert _files(volume) == []
    assert len(list(Path(settings.MAMI_SPOOL_DIR).glob("*.json"))) == 1
    # Still refused: tried again, still waiting (its heartbeat kept).
    worker.step()
    job.refresh_from_db()
    assert job.status == Status.PROCESSING
    _mount("-o", "remount,rw", target=volume)
    worker.step()
    job.refresh_from_db()
    assert (job.status, job.error_code) == (Status.COMPLETE, "")
    assert (volume / job.image.name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert forge.stats.completed == 1, "stored, not drawn again"
    assert list(Path(settings.MAMI_SPOOL_DIR).iterdir()) == []


def test_a_full_volume_leaves_no_partial_file_and_fails_readably_in_the_end(
    alice, forge, volume, settings
):
    conversation = make_conversation(alice)
    _mount("-o", "remount,size=16k", target=volume)
    settings.MAMI_STORAGE_GIVE_UP_SECONDS = 0
    job = request_picture(conversation, "a harbour at night", steps=2)
    worker = Worker(forge.url, worker_id="gpu-storage")
    assert worker.step()
    job.refresh_from_db()
    assert job.error_code == "storage_retrying"
    assert _files(volume) == [], "no partial picture left"
    worker.step()  # the give-up time has passed
    job.refresh_from_db()
    assert (job.status, job.error_code) == (Status.ERROR, "storage_failed")
    card = render_card(job, positions.snapshot())
    assert "could not store the picture (its disk is full or read-only)" in card
    assert list(Path(settings.MAMI_SPOOL_DIR).iterdir()) == []
    assert ImageJob.objects.get(pk=job.pk).image.name in ("", None)
