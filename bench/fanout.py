"""A queue move reaching every watching browser.

N users each have one conversation with one queued picture and its page
open (a socket each, N in all); another user's picture is being drawn at
the head of the queue. When it finishes, the worker starts the next, and
every page's card must show its new place: the time from Forge's answer to
the last socket receiving its new place. Target: N = 1,000 within 1 s.

Embedded (default): Daphne, as `./scripts/run` serves, with the worker in its
process, on SQLite. `--production`: one Daphne on PostgreSQL + Redis, and
`runworker` in its own process.

    .venv/bin/python bench/fanout.py [--production] [--conversations 1000]
"""

import asyncio
import re
import statistics
import time

import websockets
from common import (
    Simulator,
    fresh_database,
    option,
    serving,
    session_cookie,
    topology,
    wait_until,
)
from django.contrib.auth import get_user_model

from chat.actions import post_message
from chat.intents import ImageRequest
from chat.models import Conversation
from imagejobs.models import ImageJob, Status

PLACE = re.compile(r"#(\d+) in line")
OPENING_AT_ONCE = 32


async def watch(url: str, cookie: str, opening: asyncio.Semaphore, connected: asyncio.Event,
                moved: asyncio.Event, arrivals: list[float],
                everyone: asyncio.Event, expected: int) -> None:  # fmt: skip
    headers = {"Cookie": cookie, "Origin": url.replace("ws://", "http://").split("/ws/")[0]}
    async with opening:
        socket = await websockets.connect(
            url, additional_headers=headers, max_size=None, open_timeout=120
        )
        first = await socket.recv()
    async with socket:
        place = int(PLACE.search(first)[1])
        connected.set()
        await moved.wait()
        while True:
            frame = await socket.recv()
            if place == 1 or f"#{place - 1} in line" in frame:
                arrivals.append(time.time())
                if len(arrivals) == expected:
                    everyone.set()
                break
        # Open pages stay open: closing each as it is served would make the
        # server handle disconnects while the later pages still wait.
        await everyone.wait()


async def open_pages(
    base: str,
    pages: list[tuple[str, str]],
    moved: asyncio.Event,
    arrivals: list[float],
    everyone: asyncio.Event,
) -> list[asyncio.Task]:
    """Open every page's socket; each task ends once every page got its new
    place (`everyone`). A crowd arriving: a few dozen handshakes in flight at a time, as
    browsers reconnecting with backoff would be."""
    ws_base = base.replace("http://", "ws://")
    opening = asyncio.Semaphore(OPENING_AT_ONCE)
    flags = []
    tasks = []
    for conversation_id, cookie in pages:
        connected = asyncio.Event()
        flags.append(connected)
        url = f"{ws_base}/ws/conversations/{conversation_id}/"
        tasks.append(
            asyncio.create_task(
                watch(url, cookie, opening, connected, moved, arrivals, everyone, len(pages))
            )
        )
    began = time.perf_counter()
    pending = {asyncio.ensure_future(flag.wait()) for flag in flags}
    while pending:
        _done, pending = await asyncio.wait(pending, timeout=1)
        failed = [task for task in tasks if task.done() and task.exception()]
        if failed:
            raise RuntimeError(f"{len(failed)} pages failed to open") from failed[0].exception()
    print(f"  {len(pages)} pages opened in {time.perf_counter() - began:.1f} s")
    moved.set()
    return tasks


def main() -> None:
    fresh_database()
    count = int(option("--conversations", "1000"))
    users = get_user_model()
    head_owner = users.objects.create_user("head")
    sim = Simulator(0.01)
    sim.control(next=["freeze"])  # the head picture waits until thawed
    post_message(Conversation.objects.create(owner=head_owner), "/image", ImageRequest("head"))
    pages = []
    for n in range(count):
        user = users.objects.create_user(f"watcher{n}")
        conversation = Conversation.objects.create(owner=user)
        # Long enough that the next move comes well after the measured one.
        post_message(conversation, "/image", ImageRequest(f"fox {n}"), {"steps": 300})
        pages.append((str(conversation.id), session_cookie(user)))
    with serving(sim.url) as base:
        # The head is on the GPU (frozen there) before any page opens.
        wait_until(
            lambda: ImageJob.objects.filter(status=Status.PROCESSING).exists(), 30, "the head"
        )
        loop = asyncio.new_event_loop()
        moved = asyncio.Event()
        arrivals: list[float] = []
        everyone = asyncio.Event()
        tasks = loop.run_until_complete(open_pages(base, pages, moved, arrivals, everyone))
        sim.control(thaw=True)
        loop.run_until_complete(asyncio.wait_for(asyncio.gather(*tasks), 120))
        loop.close()
        answered = sim.control()["stats"]["calls"][0][1]
    sim.stop()
    delays = sorted(arrival - answered for arrival in arrivals)
    print(f"fan-out, {topology()}: {count} watching conversations")
    print(
        f"  Forge answered -> every page has its new place: {delays[-1]:.2f} s "
        f"(median page {statistics.median(delays):.2f} s)   (target < 1 s for 1,000)"
    )


if __name__ == "__main__":
    main()
