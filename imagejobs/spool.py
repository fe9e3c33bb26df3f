"""Pictures Forge drew that could not be finished yet: one small file per
job under MAMI_SPOOL_DIR (and the picture itself, while storage refuses
it), so the job is completed once the database returns or storage takes
the picture, also by a worker restarted meanwhile (it finishes them
before it hands its leftover jobs back), instead of the picture being
thrown away and drawn again."""

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
    # Where storage keeps the picture; "" while it refuses it.
    image_name: str
    seed: int | None
    info: dict[str, Any] | None
    worker_id: str
    # While storage refuses it: the picture's file here, the name it is to
    # be stored under, and since when (epoch seconds) it has been refused.
    picture: str = ""
    filename: str = ""
    since: float = 0.0

    @property
    def stored(self) -> bool:
        return not self.picture


def _directory() -> Path:
    return Path(settings.MAMI_SPOOL_DIR)


def _write(path: Path, data: bytes) -> None:
    """No crash leaves half a file under the final name."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def keep(entry: Spooled, picture: bytes | None = None) -> None:
    """Keep `entry` (and its picture, while storage refuses it). OSError if
    the spool cannot be written either."""
    directory = _directory()
    directory.mkdir(parents=True, exist_ok=True)
    if picture is not None:
        _write(directory / entry.picture, picture)
    _write(directory / f"{entry.job_id}.json", json.dumps(asdict(entry)).encode())
    logger.warning(
        "job %s: picture kept in the spool until it can be %s",
        entry.job_id,
        "completed (the database is away)" if entry.stored else "stored",
    )


def picture_of(entry: Spooled) -> bytes:
    return (_directory() / entry.picture).read_bytes()


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
    if entry.picture:
        (_directory() / entry.picture).unlink(missing_ok=True)
