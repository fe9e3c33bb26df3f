"""Every change of an ImageJob's status goes through this package: the
edges here, the claim in `.claim`, what each brings with it in `.edges`.

Each change is one conditional UPDATE (`WHERE id = ? AND status IN (...)`)
that bumps `version`, so a late or concurrent writer can never move a job
backwards or overwrite fields it did not mean to touch. Status changes also
write a JobTransition row. The new card is broadcast after the commit.
"""

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Max, Q, QuerySet
from django.utils import timezone

from .. import broadcast
from ..errors import ErrorCode
from ..fair_order import keys_for_new_job
from ..models import UNFINISHED_STATUSES, ImageJob, Status
from .claim import do_claim_next
from .edges import (
    CLAIM,
    COMPLETE,
    FAIL,
    NOTE_PROCESSING,
    REORDER,
    REQUEUE,
    Move,
    after_edge,
    ended,
    held_by,
    new_attempt,
)

__all__ = ["CLAIM", "Move", "do_claim_next"]

logger = logging.getLogger(__name__)


def _transition(
    job_id: uuid.UUID,
    move: Move,
    *,
    reason: str,
    holder: str | None = None,
    actor: str = "",
    code: str = "",
    now: datetime | None = None,
    where: Q | None = None,
    **fields: Any,
) -> bool:
    """Make `move` if the job is in one of its sources (and matches
    `where`); True if it moved.

    `holder`: the worker making the change, which must still hold the job;
    it is also the actor in the log.
    """
    now = now or timezone.now()
    actor = holder if holder is not None else actor
    condition = Q(pk=job_id, status__in=[str(s) for s in move.sources]) & held_by(holder)
    condition &= where or Q()
    with transaction.atomic():
        # Lock the row (PostgreSQL) so the logged from_status is the one the
        # UPDATE replaced; SQLite's IMMEDIATE transaction already serializes.
        row = (
            ImageJob.objects.select_for_update()
            .filter(condition)
            .values_list("status", "owner_id")
            .first()
        )
        if row is None:
            return False
        current, owner_id = row
        updated = ImageJob.objects.filter(condition).update(
            status=move.to, version=F("version") + 1, **fields
        )
        if updated != 1:
            return False
        after_edge(
            [job_id], [owner_id], current, move.to, at=now, reason=reason, actor=actor, code=code
        )
    logger.info("job %s %s -> %s (%s)", job_id, current, move.to, reason)
    return True


def do_enqueue(
    *,
    message_id: uuid.UUID,
    owner: User,
    prompt: str,
    retry_of: ImageJob | None = None,
    **parameters: Any,
) -> ImageJob:
    """Create a queued job for an assistant message.

    Call inside the transaction that creates the message, so the message and
    its job appear together or not at all.
    """
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        job = ImageJob.objects.create(
            message_id=message_id,
            owner=owner,
            prompt=prompt,
            status=Status.QUEUED,
            created_at=now,
            retry_of=retry_of,
            **keys_for_new_job(owner.pk, now),
            **parameters,
        )
        reason = f"retry of {retry_of.id}" if retry_of else "requested"
        after_edge([job.id], [owner.pk], "", Status.QUEUED, at=now, reason=reason)
    return job


def do_progress(
    job_id: uuid.UUID, *, progress: int, eta_seconds: float | None, worker_id: str | None = None
) -> bool:
    """Record progress (and the heartbeat) of a processing job.

    Not a state change, so no transition row; refused once the job has left
    processing, so a late progress write can't resurrect a finished card.
    """
    progress = max(0, min(progress, 99))
    updated = ImageJob.objects.filter(
        held_by(worker_id), pk=job_id, status=Status.PROCESSING
    ).update(
        progress=progress,
        eta_seconds=eta_seconds,
        heartbeat_at=timezone.now(),
        version=F("version") + 1,
    )
    if updated:
        broadcast.job_changed_on_commit(job_id, queue_moved=False)
    return bool(updated)


def do_note_storage_trouble(job_id: uuid.UUID, *, worker_id: str) -> bool:
    """The picture of a processing job is drawn but storage refused it: its
    card says so (and that it is tried again), and the note is the job's
    heartbeat meanwhile. Not a state change."""
    updated = ImageJob.objects.filter(
        held_by(worker_id), pk=job_id, status=Status.PROCESSING
    ).update(
        error_code=ErrorCode.STORAGE_RETRYING,
        progress=99,
        heartbeat_at=timezone.now(),
        version=F("version") + 1,
    )
    if updated:
        broadcast.job_changed_on_commit(job_id, queue_moved=False)
    return bool(updated)


def record_started(job_id: uuid.UUID, *, worker_id: str, at: datetime) -> None:
    """A job its worker claimed while still drawing the one before reached
    the GPU at `at`: its run (what ETAs learn from) is timed from there.
    Not a state change, and nothing its card shows."""
    ImageJob.objects.filter(held_by(worker_id), pk=job_id, status=Status.PROCESSING).update(
        started_at=at
    )


def do_complete(
    job_id: uuid.UUID,
    *,
    image_name: str,
    seed: int | None,
    info: dict[str, Any] | None,
    worker_id: str | None = None,
) -> bool:
    now = timezone.now()
    result: dict[str, Any] = {"image": image_name, "result_seed": seed, "result_info": info}
    result["error_code"] = ""  # a storage trouble noted meanwhile is over
    result |= {"progress": 100, "heartbeat_at": now, **ended(now)}
    return _transition(job_id, COMPLETE, reason="image stored", holder=worker_id, now=now, **result)


def do_fail(
    job_id: uuid.UUID,
    *,
    code: str,
    detail: str = "",
    worker_id: str | None = None,
    where: Q | None = None,
) -> bool:
    now = timezone.now()
    error: dict[str, Any] = {"error_code": code, "error_detail": detail, **ended(now)}
    return _transition(
        job_id,
        FAIL,
        reason=f"failed: {code}",
        holder=worker_id,
        code=code,
        where=where,
        now=now,
        **error,
    )


def do_cancel(
    job_id: uuid.UUID,
    *,
    reason: str = "canceled by user",
    allowed_from: Iterable[Status] = UNFINISHED_STATUSES,
    worker_id: str | None = None,
) -> bool:
    now = timezone.now()
    move = Move(tuple(allowed_from), Status.CANCELED)
    return _transition(job_id, move, reason=reason, holder=worker_id, now=now, **ended(now))


def do_cancel_queued(jobs: QuerySet[ImageJob], *, reason: str) -> int:
    """Cancel every queued job among `jobs` at once: one UPDATE whatever
    their number, one log row each, one broadcast. Returns how many."""
    now = timezone.now()
    with transaction.atomic():
        waiting = jobs.filter(status=Status.QUEUED).select_for_update()
        rows = list(waiting.values_list("id", "owner_id"))
        if not rows:
            return 0
        ids = [job_id for job_id, _owner in rows]
        ImageJob.objects.filter(pk__in=ids, status=Status.QUEUED).update(
            status=Status.CANCELED, version=F("version") + 1, **ended(now)
        )
        owners = [owner for _job, owner in rows]
        after_edge(ids, owners, Status.QUEUED, Status.CANCELED, at=now, reason=reason)
    logger.info("%d queued jobs canceled (%s)", len(ids), reason)
    return len(ids)


def do_request_cancel(job_id: uuid.UUID, *, reason: str = "cancel requested") -> bool:
    """Ask the worker drawing this job to stop: it interrupts Forge, then
    cancels. The card says "Canceling" meanwhile."""
    return _transition(
        job_id,
        NOTE_PROCESSING,
        reason=reason,
        where=Q(cancel_requested_at__isnull=True),
        cancel_requested_at=timezone.now(),
    )


def do_retry_attempt(job_id: uuid.UUID, *, worker_id: str, code: str, reason: str) -> bool:
    """Record another Forge call for a processing job after the failure `code`."""
    attempt = {"attempts": F("attempts") + 1, **new_attempt(timezone.now())}
    return _transition(
        job_id, NOTE_PROCESSING, reason=reason, holder=worker_id, code=code, **attempt
    )


def _head_priority() -> int:
    """A priority that puts a job before everything queued now."""
    top = ImageJob.objects.filter(status=Status.QUEUED).aggregate(top=Max("priority"))["top"]
    return max(top or 0, 0) + 1


def do_requeue(
    job_id: uuid.UUID,
    *,
    reason: str,
    worker_id: str | None = None,
    recovered: bool = False,
    code: str = "",
) -> bool:
    """Put a processing job back at the head of the queue: its worker is
    stopping, its Forge is unavailable, or (`recovered`) its worker died."""
    with transaction.atomic():
        back: dict[str, Any] = {"priority": _head_priority(), "worker_id": ""}
        back |= {"progress": 0, "eta_seconds": None}
        if recovered:
            back["recoveries"] = F("recoveries") + 1
        return _transition(job_id, REQUEUE, reason=reason, holder=worker_id, code=code, **back)


def do_move_to_head(job_id: uuid.UUID, *, reason: str = "moved to the head by staff") -> bool:
    with transaction.atomic():
        return _transition(job_id, REORDER, reason=reason, priority=_head_priority())
