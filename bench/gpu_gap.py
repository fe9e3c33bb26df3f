"""How long the GPU waits for mami between two pictures.

1. 100 jobs of 0.4 s (20 steps of 20 ms) are queued; one worker draws them.
   The Forge simulator (its own process, TCP_NODELAY as uvicorn) records
   when each txt2img request arrived and when its answer left: the gap is
   one answer → the next request, all of it mami's. Targets: p99 < 5 ms,
   wall / GPU-busy <= 1.01.
2. An idle worker gets one job at a time, 10 times: commit of the request →
   txt2img arrives at Forge. Target: a few milliseconds (no idle-sleep tick).

Embedded (default): SQLite, the in-memory layer on a loop thread as in
Daphne, the worker as a thread of this process. `--production`: the
PostgreSQL and Redis of DATABASE_URL and REDIS_URL, `runworker` in its own
process.

    .venv/bin/python bench/gpu_gap.py [--production] [--jobs 100] [--runs 1]
"""

import itertools
import statistics
import threading
import time

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
    worker = Worker(forge_url, worker_id="bench/embedded", stop=stop)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()

    def stop_thread() -> None:
        stop.set()
        thread.join(timeout=30)

    return stop_thread


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
    try:
        # Forge warmed up, then the busy queue.
        queue_pictures(conversation, jobs, "busy")
        stop = start_worker(sim.url)
        try:
            wait_until(lambda: done(jobs), 60 + jobs * 2, "the busy queue to drain")
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
    print(
        f"  idle worker, commit -> txt2img: median {statistics.median(idle_starts) * ms:.1f} ms, "
        f"max {max(idle_starts) * ms:.1f} ms   (target: a few ms)"
    )


if __name__ == "__main__":
    main()
