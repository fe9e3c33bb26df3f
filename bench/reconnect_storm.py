"""A reconnect storm: after a restart or a deploy, every open page opens
its socket again at once and must be resynced exactly.

N pages (100 users, N/100 conversations each; every conversation has a
few messages and one queued picture) open their sockets with 20
handshakes in flight, as browsers reconnecting with backoff would be; the
picture at the head of the queue is held on the GPU so no place changes
meanwhile. A page counts as resynced when its socket has delivered its
card with the place the database gives it. Target: 1,000 pages in < 10 s
(>= 100 a second) on both topologies.

Embedded (default): Daphne, as `./scripts/run` serves, with the worker in
its process, on SQLite. `--production`: Daphne on PostgreSQL + Redis, and
`runworker` in its own process.

    .venv/bin/python bench/reconnect_storm.py [--production] [--pages 1000] [--spy stacks.txt]
"""

import asyncio
import re
import statistics
import time
from datetime import timedelta

import websockets
from common import (
    Simulator,
    fresh_database,
    option,
    percentile,
    server_cpu_seconds,
    serving,
    session_cookie,
    spying,
    stop_spying,
    topology,
    wait_until,
)
from django.contrib.auth import get_user_model
from django.utils import timezone

from chat.actions import post_message
from chat.intents import ImageRequest
from chat.models import Conversation, Message
from imagejobs import positions
from imagejobs.models import ImageJob, Status

IN_FLIGHT = 20
USERS = 100


async def resync(
    base: str, conversation_id: str, cookie: str, job_id: str, place: int, took: list[float]
) -> websockets.ClientConnection:
    """Opens the page's socket; returns once its card arrived, checked."""
    url = f"{base.replace('http://', 'ws://')}/ws/conversations/{conversation_id}/"
    headers = {"Cookie": cookie, "Origin": base}
    began = time.perf_counter()
    socket = await websockets.connect(
        url, additional_headers=headers, max_size=None, open_timeout=120
    )
    card_id = f'id="job-{job_id}"'
    while True:
        frame = await asyncio.wait_for(socket.recv(), 60)
        if card_id in frame:
            break
    took.append(time.perf_counter() - began)
    shown = re.search(r"#(\d+) in line", frame)
    if not shown or int(shown[1]) != place:
        raise AssertionError(f"page {conversation_id}: card shows {shown}, expected #{place}")
    return socket


async def storm(base: str, pages: list[tuple[str, str, str, int]]) -> tuple[float, list[float]]:
    opening = asyncio.Semaphore(IN_FLIGHT)
    took: list[float] = []

    async def one(page: tuple[str, str, str, int]) -> websockets.ClientConnection:
        async with opening:
            return await resync(base, *page, took)

    began = time.perf_counter()
    sockets = await asyncio.gather(*(one(page) for page in pages))
    elapsed = time.perf_counter() - began
    await asyncio.gather(*(socket.close() for socket in sockets))
    return elapsed, took


def main() -> None:
    fresh_database()
    count = int(option("--pages", "1000"))
    users = get_user_model()
    sim = Simulator(0.01)
    sim.control(next=["freeze"])  # the head picture stays on the GPU
    head_owner = users.objects.create_user("head")
    post_message(Conversation.objects.create(owner=head_owner), "/image", ImageRequest("head"))
    people = [users.objects.create_user(f"reader{n}") for n in range(USERS)]
    cookies = {person.pk: session_cookie(person) for person in people}
    conversations = []
    for n in range(count):
        owner = people[n % USERS]
        conversation = Conversation.objects.create(owner=owner, title=f"page {n}")
        written = timezone.now() - timedelta(hours=1)
        Message.objects.bulk_create(
            Message(
                conversation=conversation,
                role=role,
                text=f"{role} says {k}",
                created_at=written + timedelta(seconds=k),
            )
            for k, role in enumerate(["user", "assistant"] * 5)
        )
        answer = post_message(conversation, "/image", ImageRequest(f"fox {n}"))[-1]
        job = ImageJob.objects.get(message=answer)
        conversations.append((conversation, owner, job))
    with serving(sim.url) as base:
        wait_until(
            lambda: ImageJob.objects.filter(status=Status.PROCESSING).exists(), 30, "the head"
        )
        places = positions.snapshot().positions
        pages = [
            (str(conversation.id), cookies[owner.pk], str(job.id), places[job.id.hex])
            for conversation, owner, job in conversations
        ]
        loop = asyncio.new_event_loop()
        spy = spying(option("--spy"))
        cpu_before = server_cpu_seconds()
        elapsed, took = loop.run_until_complete(storm(base, pages))
        cpu = server_cpu_seconds() - cpu_before
        stop_spying(spy)
        loop.close()
        sim.control(thaw=True)
    sim.stop()
    print(f"reconnect storm, {topology()}: {count} pages, {IN_FLIGHT} handshakes in flight")
    print(
        f"  all resynced in {elapsed:.1f} s ({count / elapsed:.0f} a second), each exactly; "
        f"one page: p50 {statistics.median(took) * 1000:.0f} ms, "
        f"p95 {percentile(took, 0.95) * 1000:.0f} ms   (target < 10 s for 1,000)"
    )
    print(
        f"  web server CPU: {cpu / count * 1000:.1f} ms a page, busy "
        f"{cpu / elapsed * 100:.0f} % of the storm"
    )


if __name__ == "__main__":
    main()
