"""The claim: a worker takes the next queued job (queued -> processing),
the edge `CLAIM` written out in SQL because it stands between two
pictures on the GPU."""

import logging
import time
import uuid
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from django.db import connection, transaction
from django.utils import timezone

from .. import scheduling
from ..fair_order import first_in_line, lock_next, lock_next_query, note_passed_over, queued_jobs
from ..models import ImageJob, JobTransition
from ..prepared import prepared_cursor
from .edges import CLAIM, after_edge

logger = logging.getLogger(__name__)


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
            job: ImageJob | Literal[_Found.NOTHING_TO_DRAW] | None = None
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


class _Found(Enum):
    # Nothing the worker can draw among the jobs a pick examines: trying
    # again would find the same.
    NOTHING_TO_DRAW = "nothing to draw"


_NOTHING_TO_DRAW = _Found.NOTHING_TO_DRAW


def _claim_picked(
    worker_id: str, loaded: str, models: frozenset[str] | None
) -> ImageJob | Literal[_Found.NOTHING_TO_DRAW] | None:
    """Step 2 of `do_claim_next`: the job `scheduling.pick` chooses from the
    first `Bound.lookahead` jobs in line, as the plan of positions does."""
    bound = scheduling.Bound.from_settings()
    line = first_in_line(bound.lookahead)
    now = timezone.now()
    chosen = scheduling.pick(enumerate(line), loaded, models, now, bound)
    if chosen is None:
        return _NOTHING_TO_DRAW if line else None
    passed = [line[index].id for index in chosen.passed]
    return _claim(uuid.UUID(line[chosen.index].id), worker_id, passed_over=passed, at=now)


# Held rows are released within milliseconds; after this many tries the
# worker's next step (at the latest its idle poll) tries again.
_CLAIM_ATTEMPTS = 50


# The CLAIM edge as the other transitions make theirs (a conditional UPDATE
# bumping `version`, a log row, then `after_edge`), written out in SQL: it
# stands between two pictures on the GPU, and the ORM's compiling took four
# fifths of its time (bench/gpu_gap.py). The UPDATE returns the claimed
# row, so no second read is needed. What it sets, with (to, worker_id, now,
# now) as parameters: a new run, its first attempt, and `edges.new_attempt`'s
# no progress and alive as of now.
_CLAIM_SET = """status = %s, version = version + 1, worker_id = %s, started_at = %s,
    attempts = 1, progress = 0, eta_seconds = NULL, heartbeat_at = %s"""
_CLAIMED = (CLAIM.sources[0], CLAIM.to)
_CLAIM_SQL = f"""
UPDATE {{job}} SET {_CLAIM_SET}
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
_CLAIM_HEAD_SQL = f"""
WITH head AS ({{lock}}),
claimed AS (
    UPDATE {{job}} SET {_CLAIM_SET}
    FROM head WHERE {{job}}.id = head.id AND {{job}}.status = %s {{fits}}
    RETURNING {{job}}.*
),
logged AS (
    INSERT INTO {{log}} (id, job_id, from_status, to_status, at, code, reason, worker_id)
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
    now = timezone.now()
    at = ops.adapt_datetimefield_value(now)
    table = ops.quote_name(ImageJob._meta.db_table)
    sql = _CLAIM_HEAD_SQL.format(
        lock=lock,
        job=table,
        log=ops.quote_name(JobTransition._meta.db_table),
        # scheduling.fits_loaded, in SQL.
        fits="" if head_only else f"AND {table}.model IN ('', %s)",
    )
    queued, to = _CLAIMED
    params = [*lock_params, to, worker_id, at, at, queued, *([] if head_only else [loaded])]
    params += [uuid.uuid4(), queued, to, at, "claimed", worker_id]
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        job = _job_from_row(cursor, sql)
    if job is not None:
        after_edge([job.id], [job.owner_id], *_CLAIMED, at=now, reason="claimed", claim=True)
    return job


def _claim(
    job_id: uuid.UUID,
    worker_id: str,
    *,
    passed_over: list[str] | None = None,
    at: datetime | None = None,
) -> ImageJob | None:
    """Move `job_id` queued -> processing for `worker_id`, if still queued.
    Each run gets the full retry budget; `recoveries` counts runs cut
    short by a lost worker. `passed_over`: the jobs (hex ids) the scheduler
    takes this one before (`fair_order.note_passed_over`)."""
    now = at or timezone.now()
    ops = connection.ops
    stamp = ops.adapt_datetimefield_value(now)
    key = ImageJob._meta.pk.get_db_prep_value(job_id, connection)
    claim = _CLAIM_SQL.format(job=ops.quote_name(ImageJob._meta.db_table))
    queued, to = _CLAIMED
    params = [to, worker_id, stamp, stamp, key, queued]
    with prepared_cursor() as cursor:
        cursor.execute(claim, params)
        job = _job_from_row(cursor, claim)
    if job is None:
        return None
    log = _LOG_SQL.format(log=ops.quote_name(JobTransition._meta.db_table))
    with prepared_cursor() as cursor:
        entry = JobTransition._meta.pk.get_db_prep_value(uuid.uuid4(), connection)
        cursor.execute(log, [entry, key, queued, to, stamp, "claimed", worker_id])
    if passed_over:
        note_passed_over(passed_over, now)
    after_edge([job.id], [job.owner_id], *_CLAIMED, at=now, reason="claimed", claim=True)
    return job
