"""What switch-aware scheduling saves on a shared GPU.

Three users each queue 20 pictures, their models interleaved over three
checkpoints, so that in the fair order every picture wants another model
than the one before it (60 jobs). Each picture draws in 1 s; loading
another checkpoint takes 3 s (the Forge simulator charges both). The queue
is drawn by one worker and then by two (each with its own simulator, as
each GPU has its own Forge), first in the plain fair order (FIFO between
turns: `MAMI_MODEL_AFFINITY_MAX_PASSES=0`) and then with the scheduler.

Printed per run: the total time, the number of switches, the longest a job
was passed over (from the first time a job behind it was drawn before it to
the last time) and how often, against the bound, and how far any user's
finished pictures strayed from an equal share (at every completion).
Targets: with one worker at least 2x faster than FIFO; no job passed over
for longer than `MAMI_MODEL_AFFINITY_MAX_WAIT` or more often than
`MAMI_MODEL_AFFINITY_MAX_PASSES`; every user's share within one job of fair.

`--scale 0.25` runs every duration (draw, switch, bound) at a quarter of
its length and reports the figures scaled back (mami's own milliseconds
per job are not scaled, so that is slightly pessimistic). `--forge URL
[--forge URL2]`: real Forges with their own models instead (give
`--models A,B,C`).

    .venv/bin/python bench/model_switching.py [--production] [--scale 1]
"""

import os
import sys
import threading
import time
from collections import Counter

from common import (
    PRODUCTION,
    Simulator,
    fresh_database,
    option,
    runworker,
    topology,
    wait_until,
)
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from chat.actions import post_message
from chat.intents import ImageRequest
from chat.models import Conversation
from imagejobs.models import ImageJob, Status

SCALE = float(option("--scale", "1"))
DRAW_SECONDS = 1.0
SWITCH_SECONDS = 3.0
STEPS = 10
USERS = 3
PER_USER = 20
MODELS = (option("--models") or "mami-sim,anime_mami-anime,mami-photo").split(",")
MAX_WAIT = settings.MAMI_MODEL_AFFINITY_MAX_WAIT


# The scheduler's bound on passes, as configured (0 makes it FIFO).
PASSES = settings.MAMI_MODEL_AFFINITY_MAX_PASSES


def forge_urls(count: int) -> tuple[list[str], list[Simulator]]:
    """One Forge per worker: the given ones, else simulators with the first
    model loaded."""
    given = [sys.argv[i + 1] for i, arg in enumerate(sys.argv[:-1]) if arg == "--forge"]
    if given:
        if len(given) < count:
            raise SystemExit(f"{count} workers need {count} --forge URLs")
        return given[:count], []
    sims = [
        Simulator(DRAW_SECONDS * SCALE / STEPS, switch_seconds=SWITCH_SECONDS * SCALE)
        for _ in range(count)
    ]
    for sim in sims:
        sim.control(loaded=MODELS[0])
    return [sim.url for sim in sims], sims


def queue_jobs(users: list) -> None:  # type: ignore[type-arg]
    ImageJob.objects.all().delete()
    Conversation.objects.all().delete()
    talks = [Conversation.objects.create(owner=user, title="models") for user in users]
    for turn in range(PER_USER):
        for n, talk in enumerate(talks):
            model = MODELS[(n + turn) % len(MODELS)]
            with transaction.atomic():
                post_message(
                    talk,
                    "/image",
                    ImageRequest(f"{talk.owner.username} {turn}"),
                    {"steps": STEPS, "model": model},
                )


def run_workers(urls: list[str], passes: int) -> float:
    """Draw the whole queue; returns when the first worker started."""
    settings.MAMI_MODEL_AFFINITY_MAX_PASSES = passes
    settings.MAMI_MODEL_AFFINITY_MAX_WAIT = MAX_WAIT * SCALE
    started = time.time()
    if PRODUCTION:
        os.environ["MAMI_MODEL_AFFINITY_MAX_PASSES"] = str(passes)
        os.environ["MAMI_MODEL_AFFINITY_MAX_WAIT"] = str(MAX_WAIT * SCALE)
        processes = [runworker(url, f"bench/gpu{n}") for n, url in enumerate(urls)]
        try:
            wait_until(all_done, 3600, "the queue to drain")
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=30)
        return started
    from imagejobs.worker import Worker

    workers = [Worker(url, worker_id=f"bench/gpu{n}", pipelined=True) for n, url in enumerate(urls)]
    threads = [threading.Thread(target=w.run, kwargs={"until_idle": True}) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return started


def all_done() -> bool:
    return not ImageJob.objects.filter(status__in=[Status.QUEUED, Status.PROCESSING]).exists()


def measure(users: list, workers: int, passes: int) -> dict[str, float]:  # type: ignore[type-arg]
    urls, sims = forge_urls(workers)
    try:
        queue_jobs(users)
        started = run_workers(urls, passes)
        switches = sum(sim.control()["stats"]["switches"] for sim in sims)
    finally:
        for sim in sims:
            sim.stop()
    jobs = list(ImageJob.objects.select_related("owner").order_by("finished_at"))
    failed = [job for job in jobs if job.status != Status.COMPLETE]
    if failed:
        raise SystemExit(f"{len(failed)} jobs did not complete: {failed[0].error_detail}")
    total = jobs[-1].finished_at.timestamp() - started
    passed = [job for job in jobs if job.first_passed_at is not None]
    # Passed over: from the first time a job behind it was drawn first to
    # the last time (what the bound limits); then, until it started, it
    # waited only for jobs before it in the fair order.
    spans = [(job.last_passed_at - job.first_passed_at).total_seconds() for job in passed]
    waits = [(job.started_at - job.first_passed_at).total_seconds() for job in passed]
    done: Counter[str] = Counter()
    worst_share = 0.0
    for count, job in enumerate(jobs, start=1):
        done[job.owner.username] += 1
        fair = count / len(users)
        worst_share = max(worst_share, *(abs(done[u.username] - fair) for u in users))
    return {
        "total": total / SCALE,
        "switches": switches,
        "longest_pass": (max(spans) if spans else 0.0) / SCALE,
        "longest_wait": (max(waits) if waits else 0.0) / SCALE,
        "most_passes": max(job.passed_over for job in jobs),
        "share": worst_share,
    }


def main() -> None:
    fresh_database()
    settings.MAMI_WORKER_IDLE_SLEEP = 0.05
    users = [get_user_model().objects.create_user(f"user{n}") for n in range(USERS)]
    print(
        f"Model switching, {topology()}: {USERS * PER_USER} jobs of {DRAW_SECONDS:g} s over "
        f"{len(MODELS)} models, switch {SWITCH_SECONDS:g} s, scale {SCALE:g}"
    )
    for workers in (1, 2):
        fifo = measure(users, workers, passes=0)
        scheduled = measure(users, workers, passes=PASSES)
        print(f"  {workers} worker(s):")
        for name, figures in (("FIFO", fifo), ("scheduler", scheduled)):
            print(
                f"    {name:9} total {figures['total']:6.1f} s, "
                f"{figures['switches']:3.0f} switches, "
                f"passed over for {figures['longest_pass']:5.1f} s at most "
                f"({figures['most_passes']} passes; first pass to start "
                f"{figures['longest_wait']:.1f} s), share off by {figures['share']:.2f} job"
            )
        target = " (target >= 2x)" if workers == 1 else ""
        print(f"    speed-up {fifo['total'] / scheduled['total']:.2f}x{target}")
        print(
            f"    passed over for {scheduled['longest_pass']:.1f} s at most "
            f"(target <= {MAX_WAIT:g} s), {scheduled['most_passes']} times "
            f"(target <= {PASSES}); share off by {scheduled['share']:.2f} (target <= 1 job)"
        )


if __name__ == "__main__":
    main()
