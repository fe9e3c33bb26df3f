"""Live previews: while Forge draws, the card shows the picture as it
sharpens; a page opened mid-draw shows the latest; none outlives the draw."""

import base64
import io
import threading

import httpx
import pytest
from PIL import Image, ImageChops, ImageStat

from imagejobs import positions, previews
from imagejobs.cards import render_card
from imagejobs.models import ImageJob, JobPreview, Status
from imagejobs.sweeps import recover_orphaned_jobs
from imagejobs.transitions import do_claim_next
from imagejobs.worker import Worker
from tests.helpers import closing, make_conversation, request_picture, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _progress(sim, skip: bool) -> dict:
    flag = "true" if skip else "false"
    return httpx.get(f"{sim.url}/sdapi/v1/progress?skip_current_image={flag}").json()


def _decode(encoded: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(encoded)))


def test_the_simulator_previews_sharpen_from_noise_to_the_picture(forge):
    forge.seconds_per_step = 0.03
    body = {"prompt": "a lighthouse", "steps": 40, "seed": 7, "width": 512, "height": 512}
    body["override_settings"] = {"show_progress_every_n_steps": 5}
    drawing = threading.Thread(
        target=httpx.post,
        args=(f"{forge.url}/sdapi/v1/txt2img",),
        kwargs={"json": body, "timeout": 30},
    )
    drawing.start()
    seen = []
    while drawing.is_alive():
        answer = _progress(forge, skip=False)
        if answer["current_image"] and answer["current_image"] not in seen:
            seen.append(answer["current_image"])
        assert _progress(forge, skip=True)["current_image"] is None, "skipped when asked"
    drawing.join()
    assert len(seen) >= 4, "a new preview every 5 steps"
    # Each preview is closer to the last one than the one before it was.
    last = _decode(seen[-1]).convert("L")
    distances = [
        ImageStat.Stat(ImageChops.difference(_decode(p).convert("L"), last)).mean[0] for p in seen
    ]
    assert distances == sorted(distances, reverse=True)
    assert _progress(forge, skip=False)["current_image"] is None, "none once idle"


def test_previews_are_off_when_forge_is_told_so(forge):
    forge.seconds_per_step = 0.02
    body = {"prompt": "fox", "steps": 30, "override_settings": {"live_previews_enable": False}}
    drawing = threading.Thread(
        target=httpx.post,
        args=(f"{forge.url}/sdapi/v1/txt2img",),
        kwargs={"json": body, "timeout": 30},
    )
    drawing.start()
    images = set()
    while drawing.is_alive():
        images.add(_progress(forge, skip=False)["current_image"])
    drawing.join()
    assert images == {None}


def test_a_preview_is_cut_to_a_small_webp():
    big = Image.new("RGB", (1024, 768), (200, 80, 30))
    out = io.BytesIO()
    big.save(out, format="PNG")
    small = previews.shrink(base64.b64encode(out.getvalue()).decode())
    assert small is not None
    image = Image.open(io.BytesIO(small))
    assert image.format == "WEBP"
    assert max(image.size) == previews.PREVIEW_SIZE
    assert len(small) < 8_000
    assert previews.shrink("bm90IGEgcGljdHVyZQ==") is None, "garbage is no preview"


def test_the_card_shows_the_latest_preview_while_drawing_and_none_after(
    client, alice, bob, forge, settings
):
    settings.MAMI_PREVIEW_INTERVAL = 0.1
    forge.seconds_per_step = 0.04
    job = request_picture(make_conversation(alice), "a lighthouse at dusk", steps=60)
    runner = threading.Thread(target=closing(Worker(forge.url, worker_id="gpu-test").step))
    runner.start()
    wait_for(lambda: JobPreview.objects.filter(job_id=job.id).exists(), timeout=10)
    first = JobPreview.objects.get(job_id=job.id).made_ms
    wait_for(lambda: JobPreview.objects.get(job_id=job.id).made_ms != first, timeout=10)

    # A page opened now shows it: the card from the database, and the image.
    job.refresh_from_db()
    assert job.status == Status.PROCESSING
    card = render_card(job, positions.snapshot())
    key = JobPreview.objects.get(job_id=job.id).made_ms
    assert f'/jobs/{job.id}/preview/?t={key}"' in card
    client.force_login(alice)
    answer = client.get(f"/jobs/{job.id}/preview/?t={key}")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "image/webp"
    assert Image.open(io.BytesIO(answer.content)).size == (previews.PREVIEW_SIZE,) * 2
    client.force_login(bob)
    assert client.get(f"/jobs/{job.id}/preview/").status_code == 404, "only the owner's"

    runner.join(timeout=30)
    job.refresh_from_db()
    assert job.status == Status.COMPLETE
    assert not JobPreview.objects.filter(job_id=job.id).exists()
    client.force_login(alice)
    assert client.get(f"/jobs/{job.id}/preview/").status_code == 404
    assert "job-card__preview" not in render_card(job, positions.snapshot())


def test_a_requeued_job_drops_the_preview_of_its_lost_run(alice):
    job = request_picture(make_conversation(alice), "a lighthouse")
    assert do_claim_next("gpu-gone") is not None
    assert previews.store(job.id, b"RIFF....WEBP") is not None
    recover_orphaned_jobs()
    job.refresh_from_db()
    assert job.status == Status.QUEUED
    assert not JobPreview.objects.filter(job_id=job.id).exists()
    assert previews.store(job.id, b"RIFF....WEBP") is None, "kept only while drawing"
    assert ImageJob.objects.get(pk=job.id).status == Status.QUEUED
