"""Guards that run inside every worker (and from cron): no job stays in
processing without a heartbeat, and no job is lost with a dead worker."""

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone, translation

from .errors import ErrorCode, user_message
from .models import ImageJob, Status
from .registry import live_worker_ids
from .transitions import do_cancel, do_fail, do_requeue

logger = logging.getLogger(__name__)


def _english(code: str) -> str:
    with translation.override("en"):
        return user_message(code)


def fail_stuck_jobs(now: datetime | None = None) -> list[uuid.UUID]:
    """Fail processing jobs without a heartbeat for MAMI_STUCK_AFTER_SECONDS."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.MAMI_STUCK_AFTER_SECONDS)
    stale = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    failed = []
    for job_id, worker_id, heartbeat in ImageJob.objects.filter(
        stale, status=Status.PROCESSING
    ).values_list("id", "worker_id", "heartbeat_at"):
        detail = (
            f"Stuck Job Guard: no heartbeat since {heartbeat:%Y-%m-%d %H:%M:%S%z} "
            f"(limit {settings.MAMI_STUCK_AFTER_SECONDS:g}s) on worker {worker_id or '?'}"
        )
        # `stale` again in the UPDATE: a heartbeat that lands meanwhile wins.
        if do_fail(
            job_id,
            code=ErrorCode.STUCK,
            user_message=_english(ErrorCode.STUCK),
            detail=detail,
            where=stale,
        ):
            logger.warning("job %s: %s", job_id, detail)
            failed.append(job_id)
    return failed


def recover_orphaned_jobs(
    now: datetime | None = None, *, restarted_worker_id: str | None = None
) -> list[uuid.UUID]:
    """Jobs left in processing by a worker that is gone: back to the head of
    the queue up to MAMI_MAX_RECOVERIES times, failed after that; canceled
    if the user asked.

    `restarted_worker_id`: a worker starting under its old id owns nothing
    yet, so whatever is recorded under that id is orphaned too.
    """
    live = live_worker_ids(now)
    if restarted_worker_id:
        live.discard(restarted_worker_id)
    recovered = []
    for job in ImageJob.objects.filter(status=Status.PROCESSING).exclude(worker_id__in=live):
        if job.cancel_requested_at is not None:
            moved = do_cancel(
                job.id, reason="canceled (its worker was lost)", worker_id=job.worker_id
            )
        elif job.recoveries < settings.MAMI_MAX_RECOVERIES:
            moved = do_requeue(
                job.id,
                reason=f"recovered from lost worker {job.worker_id or '?'}",
                worker_id=job.worker_id,
                recovered=True,
            )
        else:
            moved = do_fail(
                job.id,
                code=ErrorCode.WORKER_LOST,
                user_message=_english(ErrorCode.WORKER_LOST),
                detail=(
                    f"worker {job.worker_id or '?'} was lost "
                    f"{job.recoveries + 1} times while drawing this job"
                ),
                worker_id=job.worker_id,
            )
        if moved:
            logger.warning("job %s: recovered from lost worker %s", job.id, job.worker_id)
            recovered.append(job.id)
    return recovered
