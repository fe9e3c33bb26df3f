"""Guards that run inside every worker (and from cron): no job stays in
processing without a heartbeat, and no job is lost with a dead worker."""

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from mami.db_outage import database

from . import broadcast
from .errors import ErrorCode
from .models import ImageJob, Status, WorkerState
from .transitions import do_cancel, do_fail, do_requeue
from .workers import live_worker_ids, not_live_among

logger = logging.getLogger(__name__)

# Guards of apps built on the queue (the chat's orphaned replies), run with
# these by every worker: the GPU box is the one process that always runs.
_more_sweeps: dict[str, Callable[[], int]] = {}


def also_sweep(name: str, sweep: Callable[[], int]) -> None:
    """Run `sweep` with every worker's sweeps (registered once, at start);
    `name` says what the count it returns is of."""
    _more_sweeps[name] = sweep


def run_all() -> dict[str, int]:
    """Every sweep, as a worker runs them when due and `sweepjobs` (cron)
    runs them once: how many things each one fixed, by its name."""
    grace = max(settings.MAMI_STUCK_AFTER_SECONDS, settings.MAMI_WORKER_DEAD_AFTER_SECONDS)
    if database.settling(grace):
        # Every heartbeat stopped with the database, not with its worker:
        # judging them now would hand back (or fail) pictures being drawn.
        done = {"stuck jobs failed": 0, "jobs recovered": 0}
    else:
        done = {
            "stuck jobs failed": len(fail_stuck_jobs()),
            "jobs recovered": len(recover_orphaned_jobs()),
        }
    for name, sweep in _more_sweeps.items():
        try:
            done[name] = sweep()
        except Exception:
            logger.exception("sweep %r failed", name)
    return done


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
            detail=detail,
            where=stale,
        ):
            logger.warning("job %s: %s", job_id, detail)
            failed.append(job_id)
    return failed


def recover_orphaned_jobs(
    now: datetime | None = None,
    *,
    restarted_worker_id: str | None = None,
    kept: frozenset[uuid.UUID] = frozenset(),
) -> list[uuid.UUID]:
    """Jobs left in processing by a worker that is gone: back to the head of
    the queue up to MAMI_MAX_RECOVERIES times, failed after that; canceled
    if the user asked.

    `restarted_worker_id`: a worker starting under its old id owns nothing
    yet, so whatever is recorded under that id is orphaned too, except the
    jobs in `kept`: their pictures are drawn and in its spool.
    """
    live = live_worker_ids(now)
    # The restarted worker's row is its own again, so it is not lost; what
    # its predecessor finished last is pushed again all the same.
    _mark_lost_workers(live | {restarted_worker_id} if restarted_worker_id else live, now)
    if restarted_worker_id:
        live.discard(restarted_worker_id)
        _reannounce(restarted_worker_id, since=(now or timezone.now()) - REANNOUNCE_WINDOW)
    # Each one handed back goes before everything queued: the one started
    # last first, so that they keep the order their worker took them in (a
    # worker holds the picture it draws, the one it claimed to draw next
    # and the one it is still storing).
    orphans = list(
        ImageJob.objects.filter(status=Status.PROCESSING)
        .exclude(worker_id__in=live)
        .order_by(F("started_at").desc(nulls_last=True))
    )
    lost = not_live_among({job.worker_id for job in orphans} - {restarted_worker_id}, now)
    if restarted_worker_id:
        lost.add(restarted_worker_id)
    recovered = []
    for job in orphans:
        if job.worker_id not in lost or job.id in kept:
            # Its worker came back after `live` was read, or its picture is
            # drawn and waits in that worker's spool.
            continue
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


# A worker pushes cards after it commits, from its after-commit lane; one
# killed in between leaves open pages showing a finished picture as still
# drawing. What it finished this long before its last heartbeat is pushed
# again when it is found lost (pushing a card twice shows the same card).
REANNOUNCE_WINDOW = timedelta(seconds=60)


def _mark_lost_workers(live: set[str], now: datetime | None) -> None:
    """Note each worker that went silent without stopping, once, and push
    again the cards of what it finished last."""
    silent = WorkerState.objects.filter(stopped_at__isnull=True, lost_at__isnull=True).exclude(
        pk__in=live
    )
    rows = dict(silent.values_list("id", "last_seen"))
    lost = not_live_among(set(rows), now)
    for worker_id, last_seen in rows.items():
        if worker_id not in lost:
            continue
        # Several sweepers may find it at once: the one whose update lands
        # does the pushing. A beat or a new registration since the read
        # moves last_seen, and then it is not lost.
        found = WorkerState.objects.filter(pk=worker_id, lost_at__isnull=True, last_seen=last_seen)
        if found.update(lost_at=now or timezone.now()):
            logger.warning("worker %s is lost (last seen %s)", worker_id, last_seen)
            _reannounce(worker_id, since=last_seen - REANNOUNCE_WINDOW)


def _reannounce(worker_id: str, *, since: datetime) -> None:
    finished = ImageJob.objects.filter(worker_id=worker_id, finished_at__gte=since)
    job_ids = list(finished.values_list("id", flat=True))
    if job_ids:
        broadcast.jobs_changed_on_commit(job_ids)
