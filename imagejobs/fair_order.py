"""The queue's fair order, and reading the line in it.

Positions are derived from the database on every read, never stored; what
is stored are each user's fair-order keys, which `rerank_owners` keeps
current. Reading the line, from the cheapest:

- `queued_jobs()`, `in_line()`: querysets (in no order; in the fair order);
- `line_rows(*fields)`: ids and fields of the whole line, in order, fast;
- `read_line()`: the line as the scheduler sees it (`scheduling.Waiting`);
- `first_in_line(count)`, `lock_next()`: the head, for a claim;
- `position_of(job)`: one job's place, by one count.

What users are told (places, ETAs, capacity) is `imagejobs.positions`.
"""

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Max, Min, Q, QuerySet, Value
from django.db.models.functions import Coalesce

from . import aftercommit, scheduling
from .models import ImageJob, Status
from .prepared import prepared_cursor

# The queue's one ordering, fair between users (round robin):
#
# 1. A higher priority first: staff's "move to head" and crash recovery.
# 2. Then by turn: each user's oldest queued job is their turn 1, the next
#    one turn 2, and so on; every user's turn 1 comes before anyone's turn 2.
# 3. Within a turn, the user whose last job started longest ago (never
#    started: first), then the user who asked first.
#
# Starting the head job never reorders the rest (its owner simply moves to
# the end of the current turn), so "#N in line" is the order the GPU draws.
#
# Once jobs ask for different models, a worker may take a job for the model
# it has loaded before the head, within a bound: `imagejobs.scheduling`,
# which the claim and the positions both run over this order.
#
# The per-user parts (turn, last start, first asked) are stored on each
# queued job by `rerank_owners`, which every transition runs (just after it
# commits) for the owner of the job it changes; the claim, the positions,
# the ETAs, the API and the admin then all read `FAIR_ORDER` in index order
# (imagejob_fair_order_idx), whatever the queue's length.
FAIR_ORDER = ("-priority", "fair_turn", "fair_last_started", "fair_first_asked", "owner_id", "id")
# Stands for "never started" so that the order needs no NULLS FIRST, which
# PostgreSQL and SQLite spell differently in an index.
NEVER = datetime(1970, 1, 1, tzinfo=UTC)

_RERANK = """
UPDATE {table} SET fair_turn = ranked.turn, fair_first_asked = ranked.first_asked,
                   fair_last_started = ranked.last_started
FROM (
    SELECT id,
           ROW_NUMBER() OVER turns AS turn,
           FIRST_VALUE(created_at) OVER turns AS first_asked,
           COALESCE(
               (SELECT MAX(done.started_at) FROM {table} done
                WHERE done.owner_id = waiting.owner_id),
               %s
           ) AS last_started
    FROM {table} waiting
    WHERE status = %s AND owner_id IN ({owners})
    WINDOW turns AS (
        PARTITION BY owner_id ORDER BY priority DESC, created_at, id ROWS UNBOUNDED PRECEDING
    )
) AS ranked
WHERE {table}.id = ranked.id
"""


def rerank_on_commit(owner_ids: Iterable[int], *, off_path: bool = False) -> None:
    """Recompute the fair-order keys of these owners' queued jobs once the
    current transaction (which changed one of their jobs: its status or
    priority, or deleted one) commits. Register it before the broadcast
    that reads the new order.

    After the commit, not inside it: two claims of one owner's jobs would
    otherwise each wait for the other's row to rank it (a deadlock on
    PostgreSQL). `off_path`: on the after-commit lane, for a claim, which
    must not hold up the GPU; meanwhile the claimed job's owner ranks as
    the first of the next turn instead of the last of this one, which
    places their jobs the same against everyone else's.
    """
    owners = sorted(set(owner_ids))
    if not owners:
        return
    if off_path:
        aftercommit.on_commit(partial(rerank_owners, owners))
    else:
        transaction.on_commit(partial(rerank_owners, owners), robust=True)


def keys_for_new_job(owner_id: int, created_at: datetime) -> dict[str, object]:
    """The fair-order keys of a job its owner asks for now: last in the
    owner's own line. Adding it changes no other job's keys, so a request
    costs the same whatever the queue's length. Call inside the
    transaction that creates the job."""
    if connection.vendor == "postgresql":
        # Two requests of one owner at once would take the same turn.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_RERANK_LOCK, owner_id])
    waiting = Q(status=Status.QUEUED)
    owners = ImageJob.objects.filter(owner_id=owner_id).aggregate(
        count=Count("id", filter=waiting),
        first_asked=Min("fair_first_asked", filter=waiting),
        last_started=Max("started_at"),
    )
    return {
        "fair_turn": owners["count"] + 1,
        "fair_first_asked": owners["first_asked"] or created_at,
        "fair_last_started": owners["last_started"] or NEVER,
    }


def rerank_owners(owner_ids: Iterable[int]) -> None:
    """Recompute the fair-order keys of these owners' queued jobs: one
    statement, as many rows as they have waiting, in a transaction of its
    own (see `rerank_on_commit`)."""
    owners = sorted(set(owner_ids))
    if not owners:
        return
    table = connection.ops.quote_name(ImageJob._meta.db_table)
    sql = _RERANK.format(table=table, owners=", ".join(["%s"] * len(owners)))
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Two rankings of one owner at once would each miss the other's
            # change: the second waits here for the first to commit, then
            # ranks with a fresh view (each statement reads afresh). Owners
            # are locked in order, so rankings never wait on each other in a
            # circle; the transitions themselves never take these locks.
            for owner in owners:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_RERANK_LOCK, owner])
        # Stored as Django stores datetimes (SQLite compares their text).
        never = connection.ops.adapt_datetimefield_value(NEVER)
        cursor.execute(sql, [never, Status.QUEUED, *owners])


# The advisory-lock namespace of `rerank_owners` (any constant of ours).
_RERANK_LOCK = 0x6D616D69


def rerank_after_delete(sender: type, instance: ImageJob, **kwargs: object) -> None:
    """A deleted job (admin, a deleted conversation or user) can change its
    owner's turns and last start."""
    rerank_on_commit([instance.owner_id])


def queued_jobs() -> QuerySet[ImageJob]:
    """The queued jobs, in no particular order."""
    return ImageJob.objects.filter(status=Status.QUEUED)


def in_line() -> QuerySet[ImageJob]:
    """The queued jobs, next to run first."""
    return queued_jobs().order_by(*FAIR_ORDER)


def queued_ids() -> list[uuid.UUID]:
    """Ids of the queued jobs, next to run first (one index scan)."""
    return [uuid.UUID(job_id) for (job_id,) in line_rows()]


_in_line_sql: dict[tuple[object, ...], tuple[str, tuple[Any, ...]]] = {}


def line_rows(*fields: str) -> list[tuple[str, ...]]:
    """(id, *fields) of each queued job, next to run first, with every UUID
    as 32 hex digits (`UUID.hex`). Read past Django's per-value conversion:
    turning each row's text back into a UUID cost four times the query."""
    key = (connection.alias, connection.vendor, fields)
    if key not in _in_line_sql:
        # Compiling the query cost a third of running it.
        _in_line_sql[key] = in_line().values_list("id", *fields).query.sql_with_params()
    sql, params = _in_line_sql[key]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if connection.vendor == "sqlite":
        return rows  # UUID columns are hex text there already
    return [
        tuple(value.hex if isinstance(value, uuid.UUID) else value for value in row) for row in rows
    ]


_lock_next_sql: dict[tuple[str, str], tuple[str, tuple[object, ...]]] = {}


def lock_next_query() -> tuple[str, tuple[object, ...]]:
    """The SQL of `lock_next`, compiled once: it is on the GPU's path."""
    key = (connection.alias, connection.vendor)
    if key not in _lock_next_sql:
        head = in_line().select_for_update(skip_locked=True, of=("self",))
        _lock_next_sql[key] = head.values_list("id", "model")[:1].query.sql_with_params()
    return _lock_next_sql[key]


def lock_next() -> tuple[uuid.UUID, str] | None:
    """The head of the queue (its id and model), locked for a claim: one
    statement that skips rows another transaction holds (PostgreSQL:
    another worker's claim, a re-ranking). None while nothing is queued, or
    while every queued row is held: see `transitions.do_claim_next`.
    SQLite has no row locks: the caller's IMMEDIATE transaction serializes
    claimers. Call inside `transaction.atomic()`."""
    sql, params = lock_next_query()
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return (row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(row[0])), row[1]


# What the scheduler reads of each queued job, after its id.
SCHEDULING_FIELDS = ("model", "priority", "passed_over", "first_passed_at")


def _waiting(rows: Iterable[tuple[object, ...]]) -> list[scheduling.Waiting]:
    """`line_rows(*SCHEDULING_FIELDS)` as the scheduler's jobs."""
    return [
        scheduling.Waiting(str(job_id), str(model), int(priority), int(passes), _moment(since))  # type: ignore[call-overload]
        for job_id, model, priority, passes, since in rows
    ]


def _moment(value: object) -> datetime | None:
    """A datetime column read past Django (SQLite gives it naive, in UTC,
    or as text)."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_line(*extra: str) -> tuple[list[scheduling.Waiting], list[tuple[Any, ...]]]:
    """The queued jobs in the fair order as the scheduler sees them, and
    `extra` fields of each. The scheduler's fields are read only while a
    queued job asks for a model (a third of a queue move's reading time
    otherwise)."""
    if order_is_fair():
        rows = line_rows(*extra)
        return [scheduling.Waiting(row[0]) for row in rows], [row[1:] for row in rows]
    rows = line_rows(*SCHEDULING_FIELDS, *extra)
    cut = len(SCHEDULING_FIELDS) + 1
    return _waiting(row[:cut] for row in rows), [row[cut:] for row in rows]


def order_is_fair(line: Iterable[scheduling.Waiting] | None = None) -> bool:
    """Whether the queue is drawn in the fair order, each picture taking
    the average time: no queued job asks for a model (one indexed look-up,
    or a look at `line` if the caller has read it). Otherwise the scheduler
    decides (`scheduling.plan`): a worker may take its loaded model's job
    first, may not have a job's model, and a switch costs time; the
    claims, the places and the ETAs all follow it then."""
    if line is not None:
        return not any(job.model for job in line)
    return not queued_jobs().exclude(model="").exists()


def first_in_line(count: int) -> list[scheduling.Waiting]:
    """The first `count` queued jobs in the fair order, for a claim."""
    rows = in_line().values_list("id", *SCHEDULING_FIELDS)[:count]
    return [
        scheduling.Waiting(job_id.hex, model, priority, passes, since)
        for job_id, model, priority, passes, since in rows
    ]


def note_passed_over(job_ids: list[str], at: datetime) -> None:
    """A worker takes a job behind these (for its loaded model): count it
    against the bound (`scheduling.overdue`). In the claim's transaction,
    so the next claim and the positions see it; rows another transaction
    holds are skipped, never waited for (two claims passing each other's
    rows would otherwise deadlock)."""
    rows = ImageJob.objects.filter(
        id__in=[uuid.UUID(i) for i in job_ids], status=Status.QUEUED
    ).select_for_update(skip_locked=True)
    ImageJob.objects.filter(id__in=rows.values("id")).update(
        passed_over=F("passed_over") + 1,
        first_passed_at=Coalesce("first_passed_at", Value(at)),
        last_passed_at=at,
    )


_AHEAD = """
SELECT COUNT(*) FROM {table}
WHERE status = %s AND (priority > %s OR (priority = %s AND
      (fair_turn, fair_last_started, fair_first_asked, owner_id, id) < (%s, %s, %s, %s, %s)))
"""


def position_of(job: ImageJob) -> int | None:
    """A queued job's place in line (1 = next): one count of the jobs
    before it in the fair order, without reading the queue."""
    if job.status != Status.QUEUED:
        return None
    ops = connection.ops
    sql = _AHEAD.format(table=ops.quote_name(ImageJob._meta.db_table))
    params = [
        Status.QUEUED,
        job.priority,
        job.priority,
        job.fair_turn,
        ops.adapt_datetimefield_value(job.fair_last_started or NEVER),
        ops.adapt_datetimefield_value(job.fair_first_asked),
        job.owner_id,
        ImageJob._meta.pk.get_db_prep_value(job.id, connection),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0] + 1
