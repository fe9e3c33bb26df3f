"""How long a chat model's word takes to show in the page.

The chat-model simulator runs in its own process (an independent stand-in,
as a real model server is) and records when each word of its reply left;
a page (a real socket to a running server) records when each push arrived
and how much text it carried. A word's latency is the arrival of the
first push that shows it minus the moment it left the model. Pushes are
coalesced to one per `CHAT_REPLY_PUSH_INTERVAL` (50 ms), so the target is
p95 under that interval + 100 ms.

Embedded (default): Daphne as `./scripts/run` serves, the reply written by a thread of
the server. `--production`: Daphne on PostgreSQL + Redis. `--model-url
URL --model NAME`: a real model instead (its send times are not known
there: only the page's arrival rate is printed).

    .venv/bin/python bench/chat_latency.py [--production] [--replies 5]
"""

import asyncio
import html
import os
import re
import subprocess
import time

import httpx
import websockets
from common import (
    MANAGE,
    ROOT,
    Simulator,
    free_port,
    fresh_database,
    option,
    percentile,
    serving,
    topology,
    wait_for_http,
)
from django.conf import settings
from django.contrib.auth import get_user_model
from fanout import session_cookie

from chat.models import Conversation

TOKENS_PER_SECOND = 20.0
REPLY = re.compile(
    r'<li id="message-[^"]+"[^>]*data-reply="(?P<state>\w+)"[^>]*>(?P<body>.*?)</li>', re.S
)
TEXT = re.compile(r'class="message__text">(.*?)</p>', re.S)


def start_chat_simulator() -> tuple[str, subprocess.Popen]:
    port = free_port()
    process = subprocess.Popen(
        [*MANAGE, "chatsim", "--port", str(port), "--tokens-per-second", str(TOKENS_PER_SECOND)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "DATABASE_URL": "", "MAMI_SQLITE_PATH": ":memory:"},
    )
    base = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base}/_sim", "the chat-model simulator")
    return base, process


async def ask_and_watch(base: str, conversation: Conversation, cookie: str, text: str) -> list:
    """Post `text` as the page does and record (arrival, characters shown)
    of each push of the reply until it is done."""
    url = f"{base.replace('http://', 'ws://')}/ws/conversations/{conversation.id}/"
    seen: list[tuple[float, int]] = []
    headers = {"Cookie": cookie, "Origin": base}
    async with websockets.connect(url, additional_headers=headers) as ws:
        name, _, value = cookie.partition("=")
        async with httpx.AsyncClient(base_url=base, cookies={name: value}) as web:
            await web.get(f"/conversations/{conversation.id}/")  # sets the CSRF cookie
            answer = await web.post(
                f"/conversations/{conversation.id}/messages/",
                data={"text": text},
                headers={
                    "X-CSRFToken": web.cookies["csrftoken"],
                    "HX-Request": "true",
                    "Origin": base,
                },
            )
            answer.raise_for_status()
        while True:
            frame = await asyncio.wait_for(ws.recv(), 60)
            arrived = time.time()
            for match in REPLY.finditer(frame):
                shown = TEXT.search(match["body"])
                seen.append((arrived, len(html.unescape(shown[1])) if shown else 0))
                if match["state"] != "writing":
                    return seen


def main() -> None:
    fresh_database()
    replies = int(option("--replies", "5"))
    chat_base, chat_process = start_chat_simulator()
    os.environ["CHAT_MODEL_URL"] = option("--model-url") or f"{chat_base}/v1"
    os.environ["CHAT_MODEL"] = option("--model") or "mami-chat-sim"
    user = get_user_model().objects.create_user("talker")
    conversation = Conversation.objects.create(owner=user)
    cookie = session_cookie(user)
    forge = Simulator(0.01)
    latencies: list[float] = []
    rates: list[float] = []
    try:
        with serving(forge.url) as base:
            for n in range(replies):
                seen = asyncio.run(ask_and_watch(base, conversation, cookie, f"hello there {n}"))
                sent = httpx.get(f"{chat_base}/_sim").json()["sent"]
                for left, length in sent:
                    shown = next((at for at, chars in seen if chars >= length), None)
                    if shown is not None:
                        latencies.append(shown - left)
                if len(seen) > 1:
                    rates.append((len(seen) - 1) / (seen[-1][0] - seen[0][0]))
    finally:
        forge.stop()
        chat_process.terminate()
    interval = settings.CHAT_REPLY_PUSH_INTERVAL
    ms = 1000
    print(
        f"chat reply latency, {topology()}: {replies} replies at {TOKENS_PER_SECOND:g} words/s, "
        f"pushes at most every {interval * ms:.0f} ms"
    )
    print(
        f"  word left the model -> shown in the page: p50 {percentile(latencies, 0.5) * ms:.0f} "
        f"ms, p95 {percentile(latencies, 0.95) * ms:.0f} ms, max {max(latencies) * ms:.0f} ms   "
        f"(target p95 < {(interval + 0.1) * ms:.0f} ms)"
    )
    print(f"  pushes a second while writing: {min(rates):.1f}-{max(rates):.1f}   (at most 20)")


if __name__ == "__main__":
    main()
