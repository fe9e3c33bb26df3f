"""What users are told about the queue: each job's place in line and
when its picture should be ready, and whether the image service can draw
at all (`capacity`). The order itself is `imagejobs.fair_order`'s, or the
scheduler's plan of it once jobs ask for models."""

import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from . import scheduling, workers
from .fair_order import order_is_fair, position_of, read_line
from .models import Circuit, ImageJob, Status, WorkerState

# How many recent jobs feed the moving average of job durations.
AVERAGE_WINDOW = 20


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
    # The live workers able to draw now (circuit not open).
    drawing: tuple[WorkerState, ...] = ()


def capacity() -> Capacity:
    live = workers.live_workers()
    available = [w for w in live if w.circuit != Circuit.OPEN]
    until = None
    if live and not available:
        opens = [w.circuit_open_until for w in live if w.circuit_open_until]
        until = min(opens) if opens else None
    return Capacity(
        live=len(live),
        available=len(available),
        unavailable_until=until,
        drawing=tuple(available),
    )


@dataclass(frozen=True)
class QueueSnapshot:
    """Positions and timing of the whole queue at one moment."""

    # Place in line (1 = next) by job id as 32 hex digits (`UUID.hex`).
    positions: dict[str, int] = field(default_factory=dict)
    average_seconds: float = 0.0
    # The live workers able to draw now, at least 1 (ETAs divide by it).
    workers: int = 1
    # The live workers, whether or not their Forge answers.
    live_workers: int = 0
    # Seconds until the jobs now on the GPU are expected to be done.
    busy_seconds: float = 0.0
    # No worker is running at all: nothing will start until one does.
    no_workers: bool = False
    # Every live worker's Forge is down: the next try is then.
    unavailable_until: datetime | None = None
    # Seconds until each queued job (hex id) should be ready, when the
    # scheduler planned the queue (jobs asking for models): switches count.
    ready_in: dict[str, float] | None = None

    def position(self, job_id: uuid.UUID) -> int | None:
        return self.positions.get(job_id.hex)

    @property
    def waiting_for_service(self) -> bool:
        """Nothing starts until a worker runs or the image service is back:
        no time can honestly be promised."""
        return self.no_workers or self.unavailable_until is not None

    def eta_seconds(self, job_id: uuid.UUID) -> float | None:
        """Seconds until the queued job's picture is expected to be ready;
        None while `waiting_for_service`."""
        position = self.positions.get(job_id.hex)
        if position is None or self.waiting_for_service:
            return None
        return self.eta_of(job_id.hex, position)

    def eta_of(self, job_hex: str, position: int) -> float:
        """Seconds until the queued job `job_hex`, at `position`, is
        expected to be ready."""
        if self.ready_in is not None and job_hex in self.ready_in:
            return self.ready_in[job_hex]
        return self.eta_at(position)

    def eta_at(self, position: int) -> float:
        """Seconds until the picture at `position` is expected to be ready."""
        return self.busy_seconds + position * self.average_seconds / self.workers


@dataclass(frozen=True)
class _QueueFacts:
    """What every ETA needs besides the order: read together, and shared
    for a moment by the requests and sockets that only show them."""

    average: float
    gpus: Capacity
    processing: list[tuple[float | None, datetime | None, str]]
    read_at: float


_facts: _QueueFacts | None = None
_facts_lock = threading.Lock()


def _queue_facts(reuse: bool) -> _QueueFacts:
    """The facts, read now; with `reuse`, those read in the last
    MAMI_QUEUE_FACTS_SECONDS if any (a thousand sockets opening after a
    restart, or a rush of submissions, read them once a moment instead of
    once each; an ETA a fraction of a second old looks the same)."""
    global _facts
    if reuse:
        facts = _facts
        if facts is not None and time.monotonic() - facts.read_at < (
            settings.MAMI_QUEUE_FACTS_SECONDS
        ):
            return facts
    read_at = time.monotonic()
    facts = _QueueFacts(
        average=average_job_seconds(),
        gpus=capacity(),
        processing=list(
            ImageJob.objects.filter(status=Status.PROCESSING).values_list(
                "eta_seconds", "started_at", "worker_id"
            )
        ),
        read_at=read_at,
    )
    with _facts_lock:
        if _facts is None or _facts.read_at < read_at:
            _facts = facts
    return facts


def snapshot(
    line: list[scheduling.Waiting] | None = None,
    *,
    only: Iterable[ImageJob] | None = None,
    reuse_facts: bool = False,
) -> QueueSnapshot:
    """Every queued job's position (1 = next) and what feeds the ETAs, in a
    few indexed queries whatever the queue's length. `line`: the queued
    jobs in the fair order (`read_line`), if the caller has just read them.
    `only`: the positions of just these jobs (a request answering with its
    new job's card need not read the whole queue, unless the order is the
    scheduler's, `order_is_fair`). `reuse_facts`: for answers that only
    show the queue (a new job's card, a socket catching up), the capacity
    and timings may be a moment old (`_queue_facts`); the places never are.
    """
    counted = only is not None and order_is_fair()
    if only is not None and counted:
        places = {job.id.hex: position_of(job) for job in only}
        positions = {job: place for job, place in places.items() if place is not None}
    elif line is None:
        line = read_line()[0]
    facts = _queue_facts(reuse_facts)
    average, gpus_now, processing = facts.average, facts.gpus, facts.processing
    now = timezone.now()
    remaining = []
    left_by_worker: dict[str, float] = {}
    for eta, started, worker_id in processing:
        if eta is not None:
            left = eta
        elif started is not None:
            left = max(average - (now - started) / timedelta(seconds=1), 0.0)
        else:
            left = average
        remaining.append(left)
        left_by_worker[worker_id] = left_by_worker.get(worker_id, 0.0) + left
    parallel = max(gpus_now.available, 1)
    ready_in = None
    if not counted:
        assert line is not None
        order = [job.id for job in line]
        if not order_is_fair(line):
            gpus = [_gpu(w, left_by_worker.get(w.id, 0.0)) for w in gpus_now.drawing]
            bound = scheduling.Bound.from_settings()
            planned = scheduling.plan(line, gpus, now, average, bound)
            order, ready_in = planned.order, planned.ready_in
        positions = {job_id: index for index, job_id in enumerate(order, start=1)}
        if only is not None:
            wanted = {job.id.hex for job in only}
            positions = {job: place for job, place in positions.items() if job in wanted}
    return QueueSnapshot(
        positions=positions,
        average_seconds=average,
        workers=parallel,
        live_workers=gpus_now.live,
        busy_seconds=sum(remaining) / parallel if remaining else 0.0,
        no_workers=gpus_now.live == 0,
        unavailable_until=gpus_now.unavailable_until,
        ready_in=ready_in,
    )


def _gpu(worker: WorkerState, busy_for: float) -> scheduling.Gpu:
    models = frozenset(
        str(entry["model_name"])
        for entry in worker.checkpoints
        if isinstance(entry, dict) and entry.get("model_name")
    )
    switch = worker.switch_seconds
    return scheduling.Gpu(
        id=worker.id,
        loaded=worker.loaded_checkpoint,
        models=models or None,
        free_in=busy_for,
        switch_seconds=settings.MAMI_MODEL_SWITCH_SECONDS if switch is None else switch,
    )
