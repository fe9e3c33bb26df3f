"""Every change of an ImageJob goes through this module.

Each change is one conditional UPDATE (`WHERE id = ? AND status IN (...)`)
that bumps `version`, so a late or concurrent writer can never move a job
backwards or overwrite fields it did not mean to touch. Status changes also
write a JobTransition row. The new card is broadcast after the commit.
"""

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from . import broadcast
from .models import ImageJob, JobTransition, Status
from .queue import queued_in_order

logger = logging.getLogger(__name__)

JobId = uuid.UUID


def _transition(
    job_id: JobId,
    *,
    to: Status,
    allowed_from: Iterable[Status],
    reason: str,
    actor: str = "",
    now: datetime | None = None,
    **fields: Any,
) -> bool:
    """Move a job to `to` if it is in one of `allowed_from`; True if it moved."""
    allowed = [str(status) for status in allowed_from]
    now = now or timezone.now()
    with transaction.atomic():
        # Lock the row (PostgreSQL) so the logged from_status is the one the
        # UPDATE replaced; SQLite's IMMEDIATE transaction already serializes.
        current = (
            ImageJob.objects.select_for_update()
            .filter(pk=job_id)
            .values_list("status", flat=True)
            .first()
        )
        if current not in allowed:
            return False
        updated = ImageJob.objects.filter(pk=job_id, status__in=allowed).update(
            status=to, version=F("version") + 1, **fields
        )
        if updated != 1:
            return False
        JobTransition.objects.create(
            job_id=job_id,
            from_status=current,
            to_status=to,
            at=now,
            reason=reason[:200],
            worker_id=actor,
        )
        transaction.on_commit(partial(broadcast.job_changed, job_id), robust=True)
    logger.info("job %s %s -> %s (%s)", job_id, current, to, reason)
    return True


def do_enqueue(
    *, message_id: uuid.UUID, owner: AbstractBaseUser, prompt: str, **parameters: Any
) -> ImageJob:
    """Create a queued job for an assistant message.

    Call inside the transaction that creates the message, so the message and
    its job appear together or not at all.
    """
    now = timezone.now()
    with transaction.atomic():
        job = ImageJob.objects.create(
            message_id=message_id,
            owner=owner,
            prompt=prompt,
            status=Status.QUEUED,
            created_at=now,
            **parameters,
        )
        JobTransition.objects.create(
            job=job, from_status="", to_status=Status.QUEUED, at=now, reason="requested"
        )
        transaction.on_commit(partial(broadcast.job_changed, job.id), robust=True)
    return job


def do_claim_next(worker_id: str) -> ImageJob | None:
    """Take the next queued job for `worker_id` and mark it processing.

    1. Pick the head of the queue, skipping rows another worker has locked
       (PostgreSQL; on SQLite the IMMEDIATE transaction serializes claimers).
    2. Move it queued -> processing with a conditional UPDATE; if another
       writer got there first (canceled it, claimed it), try the next one.
    """
    while True:
        with transaction.atomic():
            job_id = (
                queued_in_order()
                .select_for_update(skip_locked=True)
                .values_list("id", flat=True)
                .first()
            )
            if job_id is None:
                return None
            now = timezone.now()
            started = _transition(
                job_id,
                to=Status.PROCESSING,
                allowed_from=[Status.QUEUED],
                reason="claimed",
                actor=worker_id,
                now=now,
                worker_id=worker_id,
                started_at=now,
                heartbeat_at=now,
                progress=0,
                eta_seconds=None,
                attempts=F("attempts") + 1,
            )
        if started:
            return ImageJob.objects.get(pk=job_id)


def do_progress(job_id: JobId, *, progress: int, eta_seconds: float | None) -> bool:
    """Record progress (and the heartbeat) of a processing job.

    Not a state change, so no transition row; refused once the job has left
    processing, so a late progress write can't resurrect a finished card.
    """
    progress = max(0, min(progress, 99))
    updated = ImageJob.objects.filter(pk=job_id, status=Status.PROCESSING).update(
        progress=progress,
        eta_seconds=eta_seconds,
        heartbeat_at=timezone.now(),
        version=F("version") + 1,
    )
    if updated:
        transaction.on_commit(
            partial(broadcast.job_changed, job_id, queue_moved=False), robust=True
        )
    return bool(updated)


def do_complete(
    job_id: JobId, *, image_name: str, seed: int | None, info: dict[str, Any] | None
) -> bool:
    now = timezone.now()
    return _transition(
        job_id,
        to=Status.COMPLETE,
        allowed_from=[Status.PROCESSING],
        reason="image stored",
        now=now,
        image=image_name,
        result_seed=seed,
        result_info=info,
        progress=100,
        eta_seconds=None,
        finished_at=now,
        heartbeat_at=now,
    )


def do_fail(job_id: JobId, *, code: str, user_message: str, detail: str = "") -> bool:
    now = timezone.now()
    return _transition(
        job_id,
        to=Status.ERROR,
        allowed_from=[Status.QUEUED, Status.PROCESSING],
        reason=f"failed: {code}",
        now=now,
        error_code=code,
        error_message=user_message,
        error_detail=detail,
        eta_seconds=None,
        finished_at=now,
    )


def do_cancel(job_id: JobId, *, reason: str = "canceled by user") -> bool:
    now = timezone.now()
    return _transition(
        job_id,
        to=Status.CANCELED,
        allowed_from=[Status.QUEUED, Status.PROCESSING],
        reason=reason,
        now=now,
        eta_seconds=None,
        finished_at=now,
    )
