"""How long the GPU waits for mami between two pictures.

1. 100 jobs of 0.4 s (20 steps of 20 ms) are queued; one worker draws them.
   The Forge simulator (its own process, TCP_NODELAY as uvicorn) records
   when each txt2img request arrived and when its answer left: the gap is
   one answer → the next request, all of it mami's. Targets: p99 < 5 ms,
   wall / GPU-busy <= 1.01.
2. An idle worker gets one job at a time, 10 times: commit of the request →
   txt2img arrives at Forge. Target: a few milliseconds (no idle-sleep tick).

`--phases` (embedded): where each gap's time goes, from timestamps taken
inside the worker (its trace hooks, `imagejobs.tracing`, which record
nothing unless a tracer is installed): the answer reaching the worker,
the wake-up, the claim, sending the next request, and what else ran then
(garbage collection, the heartbeat, a wait for SQLite's write lock).
Printed for the median gap, the p99 of each phase and the slowest gaps.

`--warmth`: no Forge; the claim alone (`do_claim_next` on SQLite or
PostgreSQL), 200 times right after the previous one and 200 times after
0.4 s of idling, as between two pictures: how much of the gap's spread is
the machine waking up rather than the work.

Embedded (default): SQLite, the in-memory layer on a loop thread as in
Daphne, the worker as a thread of this process. `--production`: the
PostgreSQL and Redis of DATABASE_URL and REDIS_URL, `runworker` in its own
process.

    .venv/bin/python bench/gpu_gap.py [--production] [--jobs 100] [--phases]
    .venv/bin/python bench/gpu_gap.py --warmth [--production]
"""

import gc
import itertools
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import wraps

from common import (
    PRODUCTION,
    Simulator,
    fresh_database,
    option,
    percentile,
    runworker,
    serve_loop,
    topology,
    wait_until,
)
from django.contrib.auth import get_user_model
from django.db import transaction

from chat.actions import post_message
from chat.intents import ImageRequest
from chat.models import Conversation
from imagejobs.models import ImageJob, Status

STEPS = 20
SECONDS_PER_STEP = 0.02


def queue_pictures(conversation: Conversation, count: int, label: str) -> float:
    """Queue `count` pictures; returns when the last one was committed."""
    committed = []
    for n in range(count):
        with transaction.atomic():
            # First in line for the commit: before the worker is woken.
            transaction.on_commit(lambda: committed.append(time.time()))
            post_message(conversation, "/image", ImageRequest(f"{label} {n}"), {"steps": STEPS})
    return committed[-1]


def start_worker(forge_url: str):  # type: ignore[no-untyped-def]
    """The worker of the topology; returns a function that stops it."""
    if PRODUCTION:
        process = runworker(forge_url)

        def stop_process() -> None:
            process.terminate()
            process.wait(timeout=30)

        return stop_process
    from imagejobs.worker import Worker

    stop = threading.Event()
    worker = Worker(forge_url, worker_id="bench/embedded", stop=stop, pipelined=True)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()

    def stop_thread() -> None:
        stop.set()
        thread.join(timeout=30)

    return stop_thread


class Phases:
    """Timestamps (`time.time()`, the clock the simulator stamps with) of
    what the embedded worker does, from wrappers around its calls."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, str]] = []  # list.append is atomic
        self.spans: list[tuple[float, float, str]] = []  # (start, end, what)

    def install(self) -> None:
        from django.db import connection

        from imagejobs import aftercommit, tracing
        from mami.sqlite3.base import DatabaseWrapper, WriterLine

        marks, spans = self.marks, self.spans

        def spanned(what: str, function, *, longer_than: float = 0.0, by_thread: bool = False):  # type: ignore[no-untyped-def]
            """`function`, recording each call as a span named `what` (and
            the calling thread's name); calls not `longer_than` are left out."""

            @wraps(function)
            def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
                began = time.time()
                try:
                    return function(*args, **kwargs)
                finally:
                    ended = time.time()
                    if ended - began > longer_than:
                        name = f"{what} ({threading.current_thread().name})" if by_thread else what
                        spans.append((began, ended, name))

            return timed

        def statement(run, sql, params, many, context):  # type: ignore[no-untyped-def]
            began = time.time()
            try:
                return run(sql, params, many, context)
            finally:
                spans.append((began, time.time(), f"claim: {' '.join(sql.split()[:2])}"))

        class Tracer(tracing.Tracer):
            """The worker's own trace hooks: its moments as marks, its
            claims as "claim"/"claimed" marks with their statements as
            spans, everything else as spans."""

            def mark(self, what: str) -> None:
                marks.append((time.time(), what))

            @contextmanager
            def span(self, what: str) -> Iterator[None]:
                began = time.time()
                if what == "claim":
                    marks.append((began, "claim"))
                    with connection.execute_wrapper(statement):
                        try:
                            yield
                        finally:
                            marks.append((time.time(), "claimed"))
                    return
                try:
                    yield
                finally:
                    spans.append((began, time.time(), what))

        tracing.install(Tracer())
        # Not the worker's: the lane's tasks, SQLite's lock and commits.
        submit = aftercommit.lane.submit
        aftercommit.lane.submit = lambda task: submit(spanned("lane task", task))
        WriterLine.acquire = spanned(
            "write lock wait", WriterLine.acquire, longer_than=0.0002, by_thread=True
        )
        DatabaseWrapper._commit = spanned("commit", DatabaseWrapper._commit, by_thread=True)
        collecting: list[float] = []

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                collecting.append(time.time())
            elif collecting:
                spans.append((collecting.pop(), time.time(), f"gc gen {info['generation']}"))

        gc.callbacks.append(on_gc)

    def report(self, calls: list[tuple[float, float]]) -> None:
        marks = sorted(self.marks)
        names = ["answered", "step", "claim", "claimed", "sent"]
        rows = []
        claimed_in_gap = 0
        for (drawn_from, answer_left), (arrived, _) in itertools.pairwise(calls):
            # Each process stamps when it gets to it: the worker may read the
            # headers before the simulator stamps its answer as sent, and
            # Forge may have the request before the worker's "sent" runs.
            answered = [
                at for at, name in marks if name == "answered" and drawn_from < at <= arrived
            ]
            if not answered:
                continue
            found = {"answered": answered[-1]}
            for at, name in marks:
                if at > found["answered"] and name in names and name not in found:
                    found[name] = at
                if "sent" in found:
                    break
            if "step" not in found or "sent" not in found:
                continue
            if "claim" in found:
                claimed_in_gap += 1
            else:
                # Claimed while the picture before was drawing.
                found["claim"] = found["claimed"] = found["step"]
            steps = [answer_left, *(found[name] for name in names), arrived]
            phases = [b - a for a, b in itertools.pairwise(steps)]
            overlap: dict[str, float] = {}
            for start, end, what in self.spans:
                inside = min(end, arrived) - max(start, answer_left)
                if inside > 0:
                    overlap[what] = overlap.get(what, 0.0) + inside
            beside = [f"{what} {seconds * 1000:.1f}" for what, seconds in sorted(overlap.items())]
            rows.append((arrived - answer_left, phases, beside))
        labels = [
            "answer leaves Forge -> its headers read",
            "-> worker awake, its step starts",
            "-> a claim starts (0: claimed ahead)",
            "the claim (0: claimed ahead)",
            "claimed -> next request sent",
            "sent -> Forge has it (< 0: stamped late)",
        ]
        ms = 1000
        print(
            f"  where a gap goes ({len(rows)} gaps attributed, "
            f"{claimed_in_gap} with a claim in them), ms:"
        )
        print(f"    {'phase':42} {'median':>7} {'p99':>7} {'max':>7}")
        for index, label in enumerate(labels):
            values = [phases[index] for _, phases, _ in rows]
            print(
                f"    {label:42} {statistics.median(values) * ms:7.2f} "
                f"{percentile(values, 0.99) * ms:7.2f} {max(values) * ms:7.2f}"
            )
        print("  the slowest gaps:")
        for total, phases, beside in sorted(rows, key=lambda row: row[0], reverse=True)[:5]:
            split = " + ".join(f"{phase * ms:.2f}" for phase in phases)
            print(f"    {total * ms:6.2f} = {split}   beside: {', '.join(beside) or 'nothing'}")
        with_gc = [total for total, _, beside in rows if any("gc" in b for b in beside)]
        print(
            f"  gaps with a garbage collection in them: {len(with_gc)} of {len(rows)}"
            + (f" (median {statistics.median(with_gc) * ms:.2f} ms)" if with_gc else "")
        )


def done(count: int) -> bool:
    return ImageJob.objects.filter(status=Status.COMPLETE).count() >= count


def main() -> None:
    fresh_database()
    if not PRODUCTION:
        serve_loop()
    jobs = int(option("--jobs", "100"))
    user = get_user_model().objects.create_user("gap")
    conversation = Conversation.objects.create(owner=user, title="gap")
    sim = Simulator(SECONDS_PER_STEP)
    phases = Phases() if "--phases" in sys.argv and not PRODUCTION else None
    if phases is not None:
        phases.install()
    try:
        # Forge warmed up, then the busy queue.
        queue_pictures(conversation, jobs, "busy")
        stop = start_worker(sim.url)
        try:
            # Looked at seldom: the embedded worker shares this process.
            wait_until(lambda: done(jobs), 60 + jobs * 2, "the busy queue to drain", every=1)
            calls = sim.control()["stats"]["calls"]
            # Idle worker: one job at a time.
            idle_starts = []
            for n in range(10):
                time.sleep(0.7)
                before = len(sim.control()["stats"]["calls"])
                committed = queue_pictures(conversation, 1, f"idle {n}")
                wait_until(lambda total=jobs + n + 1: done(total), 30, "an idle job")
                received = sim.control()["stats"]["calls"][before][0]
                idle_starts.append(received - committed)
        finally:
            stop()
    finally:
        sim.stop()
    calls.sort()
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(calls)]
    busy = sum(answered - received for received, answered in calls)
    wall = calls[-1][1] - calls[0][0]
    ms = 1000
    print(f"GPU gap, {topology()}: {len(calls)} jobs of {STEPS * SECONDS_PER_STEP:g} s")
    print(
        f"  answer -> next request: median {statistics.median(gaps) * ms:.1f} ms, "
        f"p99 {percentile(gaps, 0.99) * ms:.1f} ms, max {max(gaps) * ms:.1f} ms   "
        "(target p99 < 5 ms)"
    )
    print(f"  wall / GPU-busy: {wall / busy:.3f}   (target <= 1.01)")
    if phases is not None:
        phases.report(calls)
    print(
        f"  idle worker, commit -> txt2img: median {statistics.median(idle_starts) * ms:.1f} ms, "
        f"max {max(idle_starts) * ms:.1f} ms   (target: a few ms)"
    )


def warmth() -> None:
    """The claim's time alone, straight after the previous claim and after
    idling as the worker does while Forge draws."""
    from imagejobs import aftercommit
    from imagejobs.transitions import do_claim_next

    fresh_database()
    if not PRODUCTION:
        serve_loop()
    user = get_user_model().objects.create_user("warmth")
    conversation = Conversation.objects.create(owner=user, title="warmth")
    rounds = 200
    queue_pictures(conversation, 2 * rounds + 20, "warmth")
    ms = 1000
    print(f"the claim alone, {topology()}:")
    for label, idle in (("right after the previous one", 0.0), ("after 0.4 s idle", 0.4)):
        took = []
        for n in range(rounds + 10):
            # The claim's after-commit work done first: the claim runs alone.
            aftercommit.lane.drain()
            time.sleep(idle)
            began = time.perf_counter()
            assert do_claim_next("bench/warmth") is not None
            if n >= 10:
                took.append(time.perf_counter() - began)
        print(
            f"  {label:30} median {statistics.median(took) * ms:.2f} ms, "
            f"p90 {percentile(took, 0.9) * ms:.2f}, p99 {percentile(took, 0.99) * ms:.2f}"
        )


if __name__ == "__main__":
    warmth() if "--warmth" in sys.argv else main()
