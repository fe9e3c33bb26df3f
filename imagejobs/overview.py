"""The queue at a glance, for staff (admin) and machines (/healthz, /metrics)."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F
from django.utils import timezone

from .models import ImageJob, Status, WorkerState
from .workers import live_worker_ids


@dataclass(frozen=True)
class WorkerView:
    """A worker's row, and whether it beats (the admin's overview)."""

    state: WorkerState
    # Beating within MAMI_WORKER_DEAD_AFTER_SECONDS.
    alive: bool
    seconds_since_heartbeat: float


@dataclass(frozen=True)
class QueueOverview:
    """The admin's overview of the queue at one moment."""

    counts: dict[str, int]
    queued: int
    workers: list[WorkerView]
    average_seconds_last_hour: float | None
    completed_last_hour: int
    at: datetime


def status_counts() -> dict[str, int]:
    counts = dict(ImageJob.objects.values_list("status").annotate(n=Count("id")))
    return {status: counts.get(status, 0) for status in Status.values}


def worker_views(now: datetime | None = None) -> list[WorkerView]:
    """Every worker not cleanly stopped, alive or silent."""
    now = now or timezone.now()
    alive = live_worker_ids(now)
    rows = WorkerState.objects.filter(stopped_at__isnull=True).select_related("current_job")
    return [
        WorkerView(
            state=row,
            alive=row.id in alive,
            seconds_since_heartbeat=(now - row.last_seen).total_seconds(),
        )
        for row in rows
    ]


def queue_overview() -> QueueOverview:
    now = timezone.now()
    counts = status_counts()
    last_hour = ImageJob.objects.filter(
        status=Status.COMPLETE, finished_at__gte=now - timedelta(hours=1), started_at__isnull=False
    ).annotate(
        run=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    )
    summary = last_hour.aggregate(average=Avg("run"), n=Count("id"))
    average = summary["average"]
    return QueueOverview(
        counts=counts,
        queued=counts[Status.QUEUED],
        workers=worker_views(now),
        average_seconds_last_hour=average.total_seconds() if average else None,
        completed_last_hour=summary["n"],
        at=now,
    )
