"""Read-only views of the queue: order, positions and ETAs.

Positions are derived from the database on every read, never stored.
"""

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from . import registry
from .models import Circuit, ImageJob, Status

# How many recent jobs feed the moving average of job durations.
AVERAGE_WINDOW = 20


# The queue's one ordering: higher priority first (staff's "move to head",
# crash recovery), then arrival. The claim, positions, ETAs, the API and the
# admin all go through `queued_in_order`, so the order a card shows is the
# order the GPU draws.
QUEUE_ORDER = ("-priority", "created_at", "id")


def queued_in_order() -> QuerySet[ImageJob]:
    """Queued jobs, next to run first."""
    return ImageJob.objects.filter(status=Status.QUEUED).order_by(*QUEUE_ORDER)


def queued_ids() -> list[uuid.UUID]:
    """Ids of the queued jobs, next to run first (one indexed query)."""
    return list(queued_in_order().values_list("id", flat=True))


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
