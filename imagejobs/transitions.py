"""Every change of an ImageJob goes through this module.

Each change is one conditional UPDATE (`WHERE id = ? AND status IN (...)`)
that bumps `version`, so a late or concurrent writer can never move a job
backwards or overwrite fields it did not mean to touch. Status changes also
write a JobTransition row. The new card is broadcast after the commit.
"""

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import F, Max, Q, QuerySet
from django.utils import timezone

from . import broadcast, scheduling, wakeup
from .models import ImageJob, JobPreview, JobTransition, Status
from .planned import planned_cursor
from .queue import (
    first_in_line,
    keys_for_new_job,
    lock_next,
    lock_next_query,
    note_passed_over,
    queued_jobs,
    rerank_on_commit,
)

logger = logging.getLogger(__name__)

JobId = uuid.UUID


@dataclass(frozen=True)
class Move:
    """An edge of the state machine: from any of `sources` to `to`."""

    sources: tuple[Status, ...]
    to: Status


# The state machine. Terminal states (complete, error, canceled) are the
# source of no move. A move to the same state changes fields staff should
# see in the log (a cancel request, another attempt, a new place in line).
CLAIM = Move((Status.QUEUED,), Status.PROCESSING)
COMPLETE = Move((Status.PROCESSING,), Status.COMPLETE)
FAIL = Move((Status.QUEUED, Status.PROCESSING), Status.ERROR)
NOTE_PROCESSING = Move((Status.PROCESSING,), Status.PROCESSING)
REQUEUE = Move((Status.PROCESSING,), Status.QUEUED)
REORDER = Move((Status.QUEUED,), Status.QUEUED)
UNFINISHED = (Status.QUEUED, Status.PROCESSING)


def _held_by(worker_id: str | None) -> Q:
    """A worker may only change a job it still holds (after a recovery it
    may belong to another worker); None: anyone may."""
    return Q(worker_id=worker_id) if worker_id is not None else Q()


def _new_attempt(now: datetime) -> dict[str, Any]:
    """A Forge call starts: no progress yet, and alive as of now."""
    return {"progress": 0, "eta_seconds": None, "heartbeat_at": now}


def _ended(now: datetime) -> dict[str, Any]:
    return {"eta_seconds": None, "finished_at": now}


def _transition(
    job_id: JobId,
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
    condition = Q(pk=job_id, status__in=[str(s) for s in move.sources]) & _held_by(holder)
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
        if Status.QUEUED in (current, move.to):
            # Only a job entering, leaving or moving within the queue changes
            # its owner's turns or last start; a finish or another attempt
            # (the GPU's hot path) does not.
            rerank_on_commit([owner_id])
        if move.to == Status.QUEUED and current != Status.QUEUED:
            wakeup.notify_on_commit()
        if current == Status.PROCESSING and move.to != Status.PROCESSING:
            # A preview is of one run: a finished, failed or requeued job has none.
            JobPreview.objects.filter(job_id=job_id).delete()
        JobTransition.objects.create(
            job_id=job_id,
            from_status=current,
            to_status=move.to,
            at=now,
            reason=reason[:200],
            worker_id=actor,
            code=code,
        )
        broadcast.job_changed_on_commit(job_id)
    logger.info("job %s %s -> %s (%s)", job_id, current, move.to, reason)
    return True


def do_enqueue(
    *,
    message_id: uuid.UUID,
    owner: AbstractBaseUser,
    prompt: str,
    retry_of: ImageJob | None = None,
    **parameters: Any,
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
            retry_of=retry_of,
            **keys_for_new_job(owner.pk, now),
            **parameters,
        )
        wakeup.notify_on_commit()
        reason = f"retry of {retry_of.id}" if retry_of else "requested"
        JobTransition.objects.create(
            job=job, from_status="", to_status=Status.QUEUED, at=now, reason=reason
        )
        broadcast.job_changed_on_commit(job.id)
    return job


def do_claim_next(
    worker_id: str, *, loaded: str = "", models: frozenset[str] | None = None
) -> ImageJob | None:
    """Take the next queued job for `worker_id` and mark it processing.
    `loaded`: the model its Forge has loaded now ("": not known); `models`:
    the ones it has (None: not known). The next job is the scheduler's
    (`imagejobs.scheduling`):

    1. Lock the head of the queue (the fair order of `queue`), skipping
       rows another transaction holds (PostgreSQL; on SQLite the IMMEDIATE
       transaction serializes claimers). If it wants `loaded` or no model,
       move it queued -> processing with a conditional UPDATE: the path of
       nearly every claim, kept to one statement on PostgreSQL.
    2. Else read the first jobs in line and take the one the scheduler
       picks, counting a pass on each job it passes over.
    If another writer got there first (canceled it, claimed it), try again.

    Jobs may be queued with every one of them held for a moment (other
    workers' claims, a re-ranking of their owners): try again shortly
    rather than report an empty queue.
    """
    head_only = not loaded and models is None
    for _attempt in range(_CLAIM_ATTEMPTS):
        with transaction.atomic():
            job = None
            if connection.vendor == "postgresql":
                job = _claim_head(worker_id, loaded=loaded, head_only=head_only)
            else:
                head = lock_next()
                if head is not None and (head_only or scheduling.fits_loaded(head[1], loaded)):
                    job = _claim(head[0], worker_id)
            if job is None and not head_only:
                job = _claim_picked(worker_id, loaded, models)
        if job is _NOTHING_TO_DRAW:
            # Not a held row: nothing this worker can draw is near the head.
            return None
        if job is not None:
            logger.info("job %s queued -> processing (claimed by %s)", job.id, worker_id)
            return job
        if not queued_jobs().exists():
            return None
        time.sleep(0.002)
    return None


# `_claim_picked` found nothing the worker can draw among the jobs a pick
# examines: trying again would find the same.
_NOTHING_TO_DRAW: Any = object()


def _claim_picked(worker_id: str, loaded: str, models: frozenset[str] | None) -> ImageJob | None:
    """Step 2 of `do_claim_next`: the job `scheduling.pick` chooses from the
    first `Bound.window` jobs in line, as the plan of positions does."""
    bound = scheduling.Bound.from_settings()
    line = first_in_line(bound.window)
    now = timezone.now()
    chosen = scheduling.pick(enumerate(line), loaded, models, now, bound)
    if chosen is None:
        return _NOTHING_TO_DRAW if line else None
    passed = [line[index].id for index in chosen.passed]
    return _claim(uuid.UUID(line[chosen.index].id), worker_id, passed_over=passed, at=now)


# Held rows are released within milliseconds; after this many tries the
# worker's next step (at the latest its idle poll) tries again.
_CLAIM_ATTEMPTS = 50


# The CLAIM edge as `_transition` makes it (conditional UPDATE bumping
# `version`, a log row, re-rank and broadcast after the commit), written
# out in SQL: it stands between two pictures on the GPU, and the ORM's
# compiling took four fifths of its time (bench/gpu_gap.py). The UPDATE
# returns the claimed row, so no second read is needed.
_CLAIM_SQL = """
UPDATE {job} SET status = %s, version = version + 1, worker_id = %s, started_at = %s,
                 attempts = 1, progress = 0, eta_seconds = NULL, heartbeat_at = %s
WHERE id = %s AND status = %s
RETURNING *
"""
_LOG_SQL = """
INSERT INTO {log} (id, job_id, from_status, to_status, at, code, reason, worker_id)
VALUES (%s, %s, %s, %s, %s, '', %s, %s)
"""


# How to turn a raw ImageJob row into the model, per (database, statement):
# the concrete fields' positions in the row and their converters. Worked
# out once: Django's raw() worked it out per row, a millisecond each time.
_row_plans: dict[tuple[str, str], tuple[list[int], list[tuple[int, Any, Any]]]] = {}


def _job_from_row(cursor: Any, statement: str) -> ImageJob | None:
    """The ImageJob of the row `statement` (`RETURNING *`) left in `cursor`."""
    row = cursor.fetchone()
    if row is None:
        return None
    plan = _row_plans.get((connection.alias, statement))
    if plan is None:
        columns = tuple(column[0] for column in cursor.description)
        fields = ImageJob._meta.concrete_fields
        order = [columns.index(field.column) for field in fields]
        converters = []
        for position, field in enumerate(fields):
            column = field.get_col(ImageJob._meta.db_table)
            steps = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
            if steps:
                converters.append((position, steps, column))
        plan = _row_plans[(connection.alias, statement)] = (order, converters)
    order, converters = plan
    values = [row[index] for index in order]
    for position, steps, column in converters:
        for convert in steps:
            values[position] = convert(values[position], column, connection)
    return ImageJob.from_db(
        connection.alias, [f.attname for f in ImageJob._meta.concrete_fields], values
    )


# Both steps and the log row in one statement, on PostgreSQL: a round trip
# cost a millisecond there.
_CLAIM_HEAD_SQL = """
WITH head AS ({lock}),
claimed AS (
    UPDATE {job} SET status = %s, version = version + 1, worker_id = %s, started_at = %s,
                     attempts = 1, progress = 0, eta_seconds = NULL, heartbeat_at = %s
    FROM head WHERE {job}.id = head.id AND {job}.status = %s {fits}
    RETURNING {job}.*
),
logged AS (
    INSERT INTO {log} (id, job_id, from_status, to_status, at, code, reason, worker_id)
    SELECT %s, id, %s, %s, %s, '', %s, %s FROM claimed
)
SELECT * FROM claimed
"""


def _claim_head(worker_id: str, *, loaded: str, head_only: bool) -> ImageJob | None:
    """`lock_next` and `_claim` in one statement (PostgreSQL): the head, if
    it wants `loaded` or no model (any model with `head_only`); None if
    nothing is queued that another worker does not hold, or the head wants
    another model."""
    lock, lock_params = lock_next_query()
    ops = connection.ops
    at = ops.adapt_datetimefield_value(timezone.now())
    table = ops.quote_name(ImageJob._meta.db_table)
    sql = _CLAIM_HEAD_SQL.format(
        lock=lock,
        job=table,
        log=ops.quote_name(JobTransition._meta.db_table),
        fits="" if head_only else f"AND {table}.model IN ('', %s)",
    )
    queued, to = CLAIM.sources[0], CLAIM.to
    params = [*lock_params, to, worker_id, at, at, queued, *([] if head_only else [loaded])]
    params += [uuid.uuid4(), queued, to, at, "claimed", worker_id]
    with planned_cursor() as cursor:
        cursor.execute(sql, params)
        job = _job_from_row(cursor, sql)
    if job is not None:
        rerank_on_commit([job.owner_id], off_path=True)
        broadcast.job_changed_on_commit(job.id)
    return job


def _claim(
    job_id: JobId,
    worker_id: str,
    *,
    passed_over: list[str] | None = None,
    at: datetime | None = None,
) -> ImageJob | None:
    """Move `job_id` queued -> processing for `worker_id`, if still queued.
    Each run gets the full retry budget; `recoveries` counts runs cut
    short by a lost worker. `passed_over`: the jobs (hex ids) the scheduler
    takes this one before (`queue.note_passed_over`)."""
    now = at or timezone.now()
    ops = connection.ops
    at = ops.adapt_datetimefield_value(now)
    key = ImageJob._meta.pk.get_db_prep_value(job_id, connection)
    claim = _CLAIM_SQL.format(job=ops.quote_name(ImageJob._meta.db_table))
    params = [CLAIM.to, worker_id, at, at, key, CLAIM.sources[0]]
    with planned_cursor() as cursor:
        cursor.execute(claim, params)
        job = _job_from_row(cursor, claim)
    if job is None:
        return None
    log = _LOG_SQL.format(log=ops.quote_name(JobTransition._meta.db_table))
    with planned_cursor() as cursor:
        entry = JobTransition._meta.pk.get_db_prep_value(uuid.uuid4(), connection)
        cursor.execute(log, [entry, key, CLAIM.sources[0], CLAIM.to, at, "claimed", worker_id])
    if passed_over:
        note_passed_over(passed_over, now)
    rerank_on_commit([job.owner_id], off_path=True)
    broadcast.job_changed_on_commit(job_id)
    return job


def do_progress(
    job_id: JobId, *, progress: int, eta_seconds: float | None, worker_id: str | None = None
) -> bool:
    """Record progress (and the heartbeat) of a processing job.

    Not a state change, so no transition row; refused once the job has left
    processing, so a late progress write can't resurrect a finished card.
    """
    progress = max(0, min(progress, 99))
    updated = ImageJob.objects.filter(
        _held_by(worker_id), pk=job_id, status=Status.PROCESSING
    ).update(
        progress=progress,
        eta_seconds=eta_seconds,
        heartbeat_at=timezone.now(),
        version=F("version") + 1,
    )
    if updated:
        broadcast.job_changed_on_commit(job_id, queue_moved=False)
    return bool(updated)


def record_started(job_id: JobId, *, worker_id: str, at: datetime) -> None:
    """A job its worker claimed while still drawing the one before reached
    the GPU at `at`: its run (what ETAs learn from) is timed from there.
    Not a state change, and nothing its card shows."""
    ImageJob.objects.filter(_held_by(worker_id), pk=job_id, status=Status.PROCESSING).update(
        started_at=at
    )


def do_complete(
    job_id: JobId,
    *,
    image_name: str,
    seed: int | None,
    info: dict[str, Any] | None,
    worker_id: str | None = None,
) -> bool:
    now = timezone.now()
    result = {"image": image_name, "result_seed": seed, "result_info": info, "progress": 100}
    result |= {"heartbeat_at": now, **_ended(now)}
    return _transition(job_id, COMPLETE, reason="image stored", holder=worker_id, now=now, **result)


def do_fail(
    job_id: JobId,
    *,
    code: str,
    user_message: str,
    detail: str = "",
    worker_id: str | None = None,
    where: Q | None = None,
) -> bool:
    now = timezone.now()
    error = {"error_code": code, "error_message": user_message, "error_detail": detail}
    error |= {"now": now, **_ended(now)}
    return _transition(
        job_id, FAIL, reason=f"failed: {code}", holder=worker_id, code=code, where=where, **error
    )


def do_cancel(
    job_id: JobId,
    *,
    reason: str = "canceled by user",
    allowed_from: Iterable[Status] = UNFINISHED,
    worker_id: str | None = None,
) -> bool:
    now = timezone.now()
    move = Move(tuple(allowed_from), Status.CANCELED)
    return _transition(job_id, move, reason=reason, holder=worker_id, now=now, **_ended(now))


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
            status=Status.CANCELED, version=F("version") + 1, **_ended(now)
        )
        rerank_on_commit(owner for _job, owner in rows)
        JobTransition.objects.bulk_create(
            JobTransition(
                job_id=job_id,
                from_status=Status.QUEUED,
                to_status=Status.CANCELED,
                at=now,
                reason=reason[:200],
            )
            for job_id in ids
        )
        broadcast.jobs_changed_on_commit(ids)
    logger.info("%d queued jobs canceled (%s)", len(ids), reason)
    return len(ids)


def do_request_cancel(job_id: JobId, *, reason: str = "cancel requested") -> bool:
    """Ask the worker drawing this job to stop: it interrupts Forge, then
    cancels. The card says "Canceling" meanwhile."""
    return _transition(
        job_id,
        NOTE_PROCESSING,
        reason=reason,
        where=Q(cancel_requested_at__isnull=True),
        cancel_requested_at=timezone.now(),
    )


def do_retry_attempt(job_id: JobId, *, worker_id: str, code: str, reason: str) -> bool:
    """Record another Forge call for a processing job after the failure `code`."""
    attempt = {"attempts": F("attempts") + 1, **_new_attempt(timezone.now())}
    return _transition(
        job_id, NOTE_PROCESSING, reason=reason, holder=worker_id, code=code, **attempt
    )


def _head_priority() -> int:
    """A priority that puts a job before everything queued now."""
    top = ImageJob.objects.filter(status=Status.QUEUED).aggregate(top=Max("priority"))["top"]
    return max(top or 0, 0) + 1


def do_requeue(
    job_id: JobId,
    *,
    reason: str,
    worker_id: str | None = None,
    recovered: bool = False,
    code: str = "",
) -> bool:
    """Put a processing job back at the head of the queue: its worker is
    stopping, its Forge is unavailable, or (`recovered`) its worker died."""
    with transaction.atomic():
        back = {"priority": _head_priority(), "worker_id": "", "progress": 0, "eta_seconds": None}
        if recovered:
            back["recoveries"] = F("recoveries") + 1
        return _transition(job_id, REQUEUE, reason=reason, holder=worker_id, code=code, **back)


def do_move_to_head(job_id: JobId, *, reason: str = "moved to the head by staff") -> bool:
    with transaction.atomic():
        return _transition(job_id, REORDER, reason=reason, priority=_head_priority())
