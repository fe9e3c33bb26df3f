"""Progress as a page sees it: updates a second while a picture is drawn,
and how far behind Forge each one is.

One conversation page (a real socket to a running server) watches a
picture of 100 steps of 50 ms (5 s). The simulator's progress grows
linearly with the steps, so the moment Forge reached p % is known; the
delay of an update is its arrival minus that moment. Target: at least 4
updates a second, p95 delay under the poll period + 100 ms (350 ms).

Embedded (default): Daphne, as `./scripts/run` serves, with the worker in its process.
`--production`: Daphne on PostgreSQL + Redis, `runworker` in its own process.

    .venv/bin/python bench/progress.py [--production] [--pictures 3]
"""

import asyncio
import re
import time

import websockets
from common import fresh_database, option, percentile, topology, watch_pictures
from django.conf import settings

STEPS, SECONDS_PER_STEP = 100, 0.05
PROGRESS = re.compile(r'data-progress="(\d+)"')


async def watch(base: str, conversation_id: str, cookie: str, pictures: int) -> list:
    url = f"{base.replace('http://', 'ws://')}/ws/conversations/{conversation_id}/"
    seen: list[tuple[float, int]] = []
    async with websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": base}) as ws:
        done = 0
        while done < pictures:
            frame = await asyncio.wait_for(ws.recv(), 60)
            arrived = time.time()
            for value in PROGRESS.findall(frame):
                seen.append((arrived, int(value)))
            done = frame.count('data-status="complete"') + done
    return seen


def main() -> None:
    fresh_database()
    pictures = int(option("--pictures", "3"))
    seen, generations = watch_pictures(
        "watcher", pictures, steps=STEPS, seconds_per_step=SECONDS_PER_STEP, watch=watch
    )
    delays, rates = [], []
    for _prompt, started, ended in generations:
        during = [(at, p) for at, p in seen if started <= at <= ended + 0.5 and 0 < p < 100]
        updates = sorted({p: at for at, p in reversed(during)}.items())
        # Updates per second while they flow: the mean interval between them.
        rates.append((len(updates) - 1) / (updates[-1][1] - updates[0][1]))
        for p, at in updates:
            # The simulator reports 1 % + the share of steps done.
            reached = started + max(p - 1, 0) / 100 * STEPS * SECONDS_PER_STEP
            delays.append(at - reached)
    period = settings.FORGE_PROGRESS_INTERVAL
    print(f"progress, {topology()}: {pictures} pictures of {STEPS * SECONDS_PER_STEP:g} s")
    print(
        f"  {min(rates):.2f}-{max(rates):.2f} updates/s, delay p50 "
        f"{percentile(delays, 0.5) * 1000:.0f} ms, p95 {percentile(delays, 0.95) * 1000:.0f} ms"
        f"   (target >= 4/s, p95 < {(period + 0.1) * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
