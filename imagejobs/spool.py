"""Pictures Forge drew and storage kept, whose job could not be completed
because the database was away: one small file per job under
MAMI_SPOOL_DIR, so the picture is completed when the database returns,
also by a worker restarted meanwhile (it completes them before it hands
its leftover jobs back), instead of being thrown away and drawn again."""

import json
import logging
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Spooled:
    job_id: str
    image_name: str
    seed: int | None
    info: dict[str, Any] | None
    worker_id: str


def _directory() -> Path:
    return Path(settings.MAMI_SPOOL_DIR)


def keep(entry: Spooled) -> None:
    """Write `entry` so that no crash leaves half of it."""
    directory = _directory()
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{entry.job_id}.json"
    partial = final.with_suffix(".json.partial")
    partial.write_text(json.dumps(asdict(entry)))
    os.replace(partial, final)
    logger.warning(
        "job %s: picture %s kept in the spool until the database returns",
        entry.job_id,
        entry.image_name,
    )


def waiting(worker_id: str | None = None) -> list[Spooled]:
    """The spooled pictures (of `worker_id`'s jobs, if given), oldest first."""
    directory = _directory()
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.json"), key=lambda path: path.stat().st_mtime):
        try:
            entry = Spooled(**json.loads(path.read_text()))
            uuid.UUID(entry.job_id)
        except (ValueError, TypeError) as exc:
            logger.error("spool file %s is unreadable (%s); left for staff", path, exc)
            continue
        if worker_id is None or entry.worker_id == worker_id:
            found.append(entry)
    return found


def forget(entry: Spooled) -> None:
    (_directory() / f"{entry.job_id}.json").unlink(missing_ok=True)
