"""Live previews: the picture as Forge sees it mid-draw, made small and
kept (the latest only) for the card.

Forge encodes a preview at full size in its samples format; a card shows
it a quarter of a screen wide, so it is cut to PREVIEW_SIZE px and WebP
before it is stored or sent: a few kB per preview.
"""

import base64
import binascii
import hashlib
import io
import time
import uuid

from django.conf import settings
from django.db import transaction
from PIL import Image, UnidentifiedImageError

from .models import ImageJob, JobPreview, Status

PREVIEW_SIZE = 256
_QUALITY = 60


def enabled() -> bool:
    return settings.MAMI_PREVIEW_INTERVAL > 0


def forge_settings(steps: int) -> dict[str, object]:
    """`override_settings` for a txt2img request: previews on, made often
    enough to change about twice a second at common speeds (Forge's
    default of every 10 steps shows one or two per picture)."""
    if not enabled():
        return {}
    every = settings.MAMI_PREVIEW_EVERY_N_STEPS or max(1, steps // 8)
    return {"live_previews_enable": True, "show_progress_every_n_steps": every}


def fingerprint(encoded: str) -> str:
    """Tells previews apart without decoding them (Forge sends the same one
    until the next is made)."""
    return hashlib.blake2b(encoded.encode("ascii", "replace"), digest_size=16).hexdigest()


def shrink(encoded: str) -> bytes | None:
    """Forge's base64 preview as a WebP at most PREVIEW_SIZE px a side;
    None if it is not a picture."""
    try:
        raw = base64.b64decode(encoded.split(",", 1)[-1], validate=False)
        with Image.open(io.BytesIO(raw)) as image:
            image.draft("RGB", (PREVIEW_SIZE, PREVIEW_SIZE))  # JPEG decodes small
            small = image.convert("RGB")
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError):
        return None
    small.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    small.save(out, format="WEBP", quality=_QUALITY, method=0)
    return out.getvalue()


def store(job_id: uuid.UUID, image: bytes) -> int | None:
    """Keep `image` as the job's latest preview while it is still being
    drawn; its key (`made_ms`), or None (nothing kept) once it is not."""
    made_ms = time.time_ns() // 1_000_000
    with transaction.atomic():
        # The row lock orders this with the job's end, which drops the
        # preview: none outlives its run.
        drawing = ImageJob.objects.select_for_update().filter(pk=job_id, status=Status.PROCESSING)
        if not drawing.exists():
            return None
        JobPreview.objects.update_or_create(
            job_id=job_id, defaults={"image": image, "made_ms": made_ms}
        )
    return made_ms


def latest_key(job_id: uuid.UUID) -> int | None:
    return JobPreview.objects.filter(job_id=job_id).values_list("made_ms", flat=True).first()
