"""Read-only views of the queue: order, positions and ETAs.

Positions are derived from the database on every read, never stored.
"""

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from . import registry
from .models import Circuit, ImageJob, Status

# How many recent jobs feed the moving average of job durations.
AVERAGE_WINDOW = 20


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
# The claim (`_HEAD`), positions, ETAs, the API and the admin share one
# order (`_CANDIDATES` + `_ORDER`).
_CANDIDATES = """
WITH queued AS MATERIALIZED (
    SELECT id, owner_id, priority,
           ROW_NUMBER() OVER turns AS turn,
           FIRST_VALUE(created_at) OVER turns AS first_asked
    FROM {table} WHERE status = %s
    WINDOW turns AS (PARTITION BY owner_id ORDER BY priority DESC, created_at, id)
)
"""
# One index lookup per queued job (imagejob_owner_started_idx).
_LAST_STARTED = (
    "(SELECT MAX(done.started_at) FROM {table} done WHERE done.owner_id = queued.owner_id)"
    " AS last_started"
)
_ORDER = """
ORDER BY queued.priority DESC, queued.turn, last_started ASC NULLS FIRST,
         queued.first_asked, queued.owner_id, queued.id
"""
# Positions: straight from the ranked rows.
_ORDERED = _CANDIDATES + "SELECT queued.id, " + _LAST_STARTED + " FROM queued" + _ORDER
# The claim: the same order, over the table itself, so the head row can be
# locked (PostgreSQL can't lock rows of a WITH query).
_HEAD = (
    _CANDIDATES
    + "SELECT job.id, "
    + _LAST_STARTED
    + " FROM {table} job JOIN queued ON queued.id = job.id WHERE job.status = %s"
    + _ORDER
    + "LIMIT 1 FOR UPDATE OF job SKIP LOCKED"
)


def _table() -> str:
    return connection.ops.quote_name(ImageJob._meta.db_table)


def queued_jobs() -> QuerySet[ImageJob]:
    """The queued jobs, in no particular order."""
    return ImageJob.objects.filter(status=Status.QUEUED)


def queued_ids() -> list[uuid.UUID]:
    """Ids of the queued jobs, next to run first (one query)."""
    with connection.cursor() as cursor:
        cursor.execute(_ORDERED.format(table=_table()), [Status.QUEUED])
        return [_as_uuid(row[0]) for row in cursor.fetchall()]


def lock_next_id() -> uuid.UUID | None:
    """The head of the queue, locked for a claim: one statement that skips
    rows another worker holds (PostgreSQL). SQLite has no row locks: the
    caller's IMMEDIATE transaction serializes claimers, and the head is
    the first of the positions. Call inside `transaction.atomic()`."""
    if not connection.features.has_select_for_update_skip_locked:
        sql, params = _ORDERED + "LIMIT 1", [Status.QUEUED]
    else:
        sql, params = _HEAD, [Status.QUEUED, Status.QUEUED]
    with connection.cursor() as cursor:
        cursor.execute(sql.format(table=_table()), params)
        row = cursor.fetchone()
    return _as_uuid(row[0]) if row else None


def _as_uuid(value: object) -> uuid.UUID:
    # SQLite hands UUID columns back as hex strings, PostgreSQL as UUIDs.
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def average_job_seconds() -> float:
    """Moving average of how long the last finished jobs took on the GPU."""
    recent = (
        ImageJob.objects.filter(status=Status.COMPLETE, started_at__isnull=False)
        .order_by("-finished_at")
        .values_list("started_at", "finished_at")[:AVERAGE_WINDOW]
    )
    durations = [(end - start).total_seconds() for start, end in recent if end and start]
    if not durations:
        return settings.MAMI_DEFAULT_JOB_SECONDS
    return max(sum(durations) / len(durations), 0.1)


@dataclass(frozen=True)
class Capacity:
    """The live workers, and when the image service is back if none can draw."""

    live: int
    available: int
    unavailable_until: datetime | None


def capacity() -> Capacity:
    workers = registry.live_workers()
    available = [w for w in workers if w.circuit != Circuit.OPEN]
    until = None
    if workers and not available:
        opens = [w.circuit_open_until for w in workers if w.circuit_open_until]
        until = min(opens) if opens else None
    return Capacity(live=len(workers), available=len(available), unavailable_until=until)


@dataclass(frozen=True)
class QueueSnapshot:
    """Positions and timing of the whole queue at one moment."""

    positions: dict[uuid.UUID, int] = field(default_factory=dict)
    average_seconds: float = 0.0
    workers: int = 1
    # Seconds until the jobs now on the GPU are expected to be done.
    busy_seconds: float = 0.0
    # No worker is running at all: nothing will start until one does.
    no_workers: bool = False
    # Every live worker's Forge is down: the next try is then.
    unavailable_until: datetime | None = None

    def position(self, job_id: uuid.UUID) -> int | None:
        return self.positions.get(job_id)

    def eta_seconds(self, job_id: uuid.UUID) -> float | None:
        """Seconds until the queued job's picture is expected to be ready."""
        position = self.positions.get(job_id)
        if position is None:
            return None
        return self.busy_seconds + position * self.average_seconds / self.workers


def snapshot() -> QueueSnapshot:
    """Every queued job's position (1 = next) and what feeds the ETAs, in a
    few indexed queries whatever the queue's length."""
    ids = queued_ids()
    average = average_job_seconds()
    workers = capacity()
    processing = ImageJob.objects.filter(status=Status.PROCESSING).values_list(
        "eta_seconds", "started_at"
    )
    now = timezone.now()
    remaining = []
    for eta, started in processing:
        if eta is not None:
            remaining.append(eta)
        elif started is not None:
            remaining.append(max(average - (now - started) / timedelta(seconds=1), 0.0))
        else:
            remaining.append(average)
    parallel = max(workers.available, 1)
    busy = sum(remaining) / parallel if remaining else 0.0
    return QueueSnapshot(
        positions={job_id: index for index, job_id in enumerate(ids, start=1)},
        average_seconds=average,
        workers=parallel,
        busy_seconds=busy,
        no_workers=workers.live == 0,
        unavailable_until=workers.unavailable_until,
    )
