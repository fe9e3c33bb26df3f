"""Which queued job a worker draws next, now that jobs ask for models: the
one ordering function the claim and the positions (cards, API, admin) share.

Loading another checkpoint costs seconds to minutes of GPU time, so a plain
fair order of A, B, A, B... pictures would spend most of it loading
weights. The fair order (`fair_order.FAIR_ORDER`) stays the base; a worker whose
Forge has model L loaded

1. takes the first job in the fair order it can draw, if that one wants L
   or no model in particular: no switch;
2. else the first job (among the first `Bound.lookahead` of the line, drawable
   or not) that wants L, passing over the ones before it; but a job that was already passed over
   `Bound.max_passes` times, or first `Bound.max_wait` seconds ago, or that
   staff or a recovery put first (priority), is never passed over again:
   reaching one, the worker takes it;
3. else the first job: a switch.

A job whose model the worker's Forge does not have is neither taken nor
passed over by that worker. Because every user's jobs keep their fair turn
and a pass is bounded, fair share between users holds within the bound.

`plan` runs the same rule forward over every live worker to tell each job
its place and when it should be ready, so "#N in line" is the order drawn.
"""

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from django.conf import settings


@dataclass
class Waiting:
    """A queued job as the scheduler sees it (id as 32 hex digits)."""

    id: str
    model: str = ""
    priority: int = 0
    passed_over: int = 0
    first_passed_at: datetime | None = None


@dataclass(frozen=True)
class Bound:
    """How far a job may be passed over for another model's."""

    max_wait: float
    max_passes: int
    # How many jobs of the line a pick examines, from its head, whether the
    # worker can draw them or not: the claim reads just these.
    lookahead: int

    @classmethod
    def from_settings(cls) -> "Bound":
        return cls(
            max_wait=settings.MAMI_MODEL_AFFINITY_MAX_WAIT,
            max_passes=settings.MAMI_MODEL_AFFINITY_MAX_PASSES,
            lookahead=settings.MAMI_MODEL_AFFINITY_LOOKAHEAD,
        )


def overdue(job: Waiting, now: datetime, bound: Bound) -> bool:
    """Passed over long enough: the next worker to reach it takes it."""
    if job.priority > 0 or job.passed_over >= bound.max_passes:
        return True
    since = job.first_passed_at
    return since is not None and (now - since).total_seconds() >= bound.max_wait


def fits_loaded(model: str, loaded: str) -> bool:
    """Drawing `model` keeps the loaded checkpoint: no model asked, or the
    one loaded. (The claim's fast path tests the head so, in SQL too.)"""
    return not model or model == loaded


def can_draw(model: str, models: frozenset[str] | None) -> bool:
    """Whether a worker whose Forge has `models` (None: not known) can draw
    a job asking for `model`."""
    return not model or models is None or model in models


@dataclass(frozen=True)
class Pick:
    """The job a worker takes (its index in the line read), and the ones it
    passes over to take it."""

    index: int
    passed: tuple[int, ...] = ()


def pick(
    line: Iterable[tuple[int, Waiting]],
    loaded: str,
    models: frozenset[str] | None,
    now: datetime,
    bound: Bound,
) -> Pick | None:
    """The job a worker with `loaded` (its Forge's current model; "" if not
    known) takes next from `line`, (index, job) pairs in fair order; None
    if it can draw none of the first `bound.lookahead` of them (a job it
    cannot draw counts too, so a claim that reads only those decides as a
    plan of the whole line does)."""
    head: int | None = None
    passed: list[int] = []
    for index, job in islice(line, bound.lookahead):
        if not can_draw(job.model, models):
            continue
        if head is None:
            head = index
            if not loaded or fits_loaded(job.model, loaded):
                return Pick(index)
        elif job.model == loaded:
            return Pick(index, tuple(passed))
        if overdue(job, now, bound):
            return Pick(index, tuple(passed))
        passed.append(index)
    return None if head is None else Pick(head)


@dataclass
class Gpu:
    """A live worker as the plan sees it."""

    id: str
    loaded: str = ""
    models: frozenset[str] | None = None
    # Seconds from now until it has finished what it is drawing.
    free_in: float = 0.0
    switch_seconds: float = 0.0


def needs_switch(loaded: str, model: str) -> bool:
    """Whether drawing `model` makes Forge load another checkpoint (not
    knowing what it has loaded: assume not)."""
    return bool(model and loaded and model != loaded)


@dataclass
class Plan:
    """The queue in the order it will be drawn, and when each picture should
    be ready (seconds from now; absent for a job no live worker can draw)."""

    order: list[str] = field(default_factory=list)
    ready_in: dict[str, float] = field(default_factory=dict)


def plan(
    line: Sequence[Waiting],
    gpus: Sequence[Gpu],
    now: datetime,
    seconds_per_job: float,
    bound: Bound,
) -> Plan:
    """Run `pick` forward: the worker free first takes its next job, and so
    on, each pass counted as the claim would count it, each worker seeing
    the line as its claim would then (the first `Bound.lookahead` jobs left)."""
    result = Plan()
    jobs = [Waiting(j.id, j.model, j.priority, j.passed_over, j.first_passed_at) for j in line]
    # The jobs not yet planned, as a linked list in fair order: taking one
    # from the middle (the usual case) must not leave a gap that every
    # later pick walks through again.
    after = list(range(1, len(jobs) + 1))
    before = list(range(-1, len(jobs) - 1))
    first = 0 if jobs else len(jobs)

    def remaining() -> Iterator[tuple[int, Waiting]]:
        index = first
        while index < len(jobs):
            yield index, jobs[index]
            index = after[index]

    ready = [(gpu.free_in, gpu.id, gpu) for gpu in gpus]
    heapq.heapify(ready)
    # Workers that found nothing they can draw near the head: they look
    # again when another worker takes a job (the head moves), as an idle
    # worker's claim does.
    parked: list[Gpu] = []
    while ready and first < len(jobs):
        free_in, _, gpu = heapq.heappop(ready)
        at = now + timedelta(seconds=free_in)
        chosen = pick(remaining(), gpu.loaded, gpu.models, at, bound)
        if chosen is None:
            parked.append(gpu)
            continue
        for index in chosen.passed:
            jobs[index].passed_over += 1
            jobs[index].first_passed_at = jobs[index].first_passed_at or at
        taken = chosen.index
        if before[taken] >= 0:
            after[before[taken]] = after[taken]
        else:
            first = after[taken]
        if after[taken] < len(jobs):
            before[after[taken]] = before[taken]
        job = jobs[taken]
        cost = seconds_per_job
        if needs_switch(gpu.loaded, job.model):
            cost += gpu.switch_seconds
        gpu.loaded = job.model or gpu.loaded
        result.order.append(job.id)
        result.ready_in[job.id] = free_in + cost
        heapq.heappush(ready, (free_in + cost, gpu.id, gpu))
        for idle in parked:
            heapq.heappush(ready, (free_in, idle.id, idle))
        parked.clear()
    # What no live worker can draw keeps its fair place after the rest.
    result.order.extend(job.id for _index, job in remaining())
    return result
