"""What live previews cost: bytes a watching page receives, and the
worker's CPU per preview.

1. A page (a real socket to a running server, embedded by default)
   watches pictures of 100 steps of 50 ms (5 s) with previews on, and once
   more with them off (MAMI_PREVIEW_INTERVAL=0). Counted: the socket's
   bytes, and the preview images the page fetches (each new one once, as
   the browser does).
2. In this process, against the simulator drawing a 512 x 512 picture:
   the CPU one preview adds to the worker's progress poll (fetching it with
   the poll, fingerprint, cutting it to a 256 px WebP, storing it), against
   a poll without it.

    .venv/bin/python bench/previews.py [--production] [--pictures 2]
"""

import asyncio
import os
import re
import threading
import time

import httpx
import websockets
from common import (
    Simulator,
    fresh_database,
    option,
    percentile,
    topology,
    watch_pictures,
)
from django.contrib.auth import get_user_model

from chat.actions import post_message
from chat.intents import ImageRequest
from chat.models import Conversation
from imagejobs import previews
from imagejobs.forge import ForgeClient
from imagejobs.models import Status
from imagejobs.transitions import do_claim_next

STEPS, SECONDS_PER_STEP = 100, 0.05
PREVIEW = re.compile(r'src="(/jobs/[0-9a-f-]+/preview/\?t=\d+)"')


async def watch(base: str, conversation_id: str, cookie: str, pictures: int) -> tuple[int, list]:
    url = f"{base.replace('http://', 'ws://')}/ws/conversations/{conversation_id}/"
    headers = {"Cookie": cookie, "Origin": base}
    socket_bytes, fetched = 0, {}
    async with (
        websockets.connect(url, additional_headers=headers) as ws,
        httpx.AsyncClient(base_url=base, headers={"Cookie": cookie}) as http,
    ):
        done = 0
        while done < pictures:
            frame = await asyncio.wait_for(ws.recv(), 60)
            socket_bytes += len(frame.encode())
            for src in PREVIEW.findall(frame):
                if src not in fetched:
                    answer = await http.get(src)
                    fetched[src] = len(answer.content) if answer.status_code == 200 else 0
            done += frame.count('data-status="complete"')
    return socket_bytes, [size for size in fetched.values() if size]


def page_bytes(pictures: int, *, previews_on: bool) -> tuple[int, list[int]]:
    os.environ["MAMI_PREVIEW_INTERVAL"] = "0.5" if previews_on else "0"
    result, _generations = watch_pictures(
        f"watcher-{previews_on}",
        pictures,
        steps=STEPS,
        seconds_per_step=SECONDS_PER_STEP,
        watch=watch,
    )
    return result


def worker_cpu(samples: int) -> tuple[list[float], list[float], list[int]]:
    """Thread CPU of a poll with the preview and all it leads to, and of a
    poll without; the stored sizes."""
    user = get_user_model().objects.create_user("cpu")
    post_message(Conversation.objects.create(owner=user), "/image", ImageRequest("fox"))
    job = do_claim_next("bench")
    assert job is not None
    assert job.status == Status.PROCESSING
    sim = Simulator(0.05)
    body = {"prompt": "a lighthouse", "steps": 10_000, "width": 512, "height": 512}
    body["override_settings"] = {"show_progress_every_n_steps": 1}
    drawing = threading.Thread(
        target=lambda: httpx.post(f"{sim.url}/sdapi/v1/txt2img", json=body, timeout=600),
        daemon=True,
    )
    drawing.start()
    forge = ForgeClient(sim.url)
    time.sleep(0.5)
    with_preview, without, sizes = [], [], []
    seen = ""
    while len(with_preview) < samples:
        began = time.thread_time()
        progress = forge.progress(with_image=True)
        mark = previews.fingerprint(progress.current_image or "")
        if mark == seen:
            continue  # the same preview again: the worker stops here
        seen = mark
        image = previews.shrink(progress.current_image)
        previews.store(job.id, image)
        with_preview.append(time.thread_time() - began)
        sizes.append(len(image))
        began = time.thread_time()
        forge.progress()
        without.append(time.thread_time() - began)
        time.sleep(0.1)
    forge.interrupt()
    sim.stop()
    return with_preview, without, sizes


def main() -> None:
    fresh_database()
    pictures = int(option("--pictures", "2"))
    on_bytes, fetched = page_bytes(pictures, previews_on=True)
    off_bytes, _ = page_bytes(pictures, previews_on=False)
    with_preview, without, sizes = worker_cpu(20)
    seconds = pictures * STEPS * SECONDS_PER_STEP
    kb = 1024
    print(f"previews, {topology()}: {pictures} pictures of {seconds:g} s watched by one page")
    print(
        f"  socket: {on_bytes / kb:.1f} kB with previews, {off_bytes / kb:.1f} kB without "
        f"({(on_bytes - off_bytes) / seconds / kb:.2f} kB/s more)"
    )
    print(
        f"  preview images fetched: {len(fetched)} ({len(fetched) / seconds:.2f}/s), "
        f"{sum(fetched) / kb:.1f} kB in all, median {percentile(fetched, 0.5) / kb:.1f} kB"
    )
    ms = 1000
    print(
        f"  worker CPU per preview (the simulator's 256 px PNG -> WebP, stored): "
        f"median {percentile(with_preview, 0.5) * ms:.1f} ms, p95 "
        f"{percentile(with_preview, 0.95) * ms:.1f} ms; a poll without: "
        f"{percentile(without, 0.5) * ms:.1f} ms; stored size median "
        f"{percentile(sizes, 0.5) / kb:.1f} kB"
    )


if __name__ == "__main__":
    main()
