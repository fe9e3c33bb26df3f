"""One user's chatter must not delay another's replies.

bob asks the chat model a few questions, one after another, and times each
from his post to the reply's end as his page sees it: first with the model
to himself, then while alice posts 300 messages as fast as the server takes
them. Each alice's message the server refuses (her replies in flight or per
minute: `chat.reply_limits`) is counted; nothing else is. The chat-model
simulator streams at 20 words a second in its own process, as a model
server would.

Target: bob's p95 with alice's flood within 1.5 x his p95 without it.

    .venv/bin/python bench/reply_fairness.py [--production] [--asks 8] [--flood 300]
"""

import asyncio
import os
import time

import httpx
from chat_latency import ask_and_watch, start_chat_simulator
from common import Simulator, fresh_database, option, percentile, serving, topology
from django.contrib.auth import get_user_model
from fanout import session_cookie

from chat.models import Conversation


async def flood(base: str, conversation: Conversation, cookie: str, messages: int) -> dict:
    """alice's messages, posted as fast as the server answers them."""
    name, _, value = cookie.partition("=")
    answers: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=base, cookies={name: value}, timeout=60) as web:
        await web.get(f"/conversations/{conversation.id}/")
        for n in range(messages):
            answer = await web.post(
                f"/conversations/{conversation.id}/messages/",
                data={"text": f"tell me something, number {n}"},
                headers={
                    "X-CSRFToken": web.cookies["csrftoken"],
                    "HX-Request": "true",
                    "Origin": base,
                },
            )
            answers[answer.status_code] = answers.get(answer.status_code, 0) + 1
    return answers


async def bobs_replies(
    base: str, conversation: Conversation, cookie: str, asks: int
) -> list[float]:
    took = []
    for n in range(asks):
        started = time.time()
        seen = await ask_and_watch(base, conversation, cookie, f"how are you, question {n}")
        took.append(seen[-1][0] - started)
    return took


async def with_flood(
    base: str, bob: tuple[Conversation, str], alice: tuple[Conversation, str], asks: int, n: int
) -> tuple[list[float], dict]:
    flooding = asyncio.create_task(flood(base, *alice, n))
    await asyncio.sleep(1.0)  # alice's flood is under way first
    took = await bobs_replies(base, *bob, asks)
    return took, await flooding


def main() -> None:
    fresh_database()
    asks = int(option("--asks", "8"))
    messages = int(option("--flood", "300"))
    chat_base, chat_process = start_chat_simulator()
    os.environ["CHAT_MODEL_URL"] = f"{chat_base}/v1"
    os.environ["CHAT_MODEL"] = "mami-chat-sim"
    users = get_user_model().objects
    bob_user, alice_user = users.create_user("bob"), users.create_user("alice")
    bob = (Conversation.objects.create(owner=bob_user), session_cookie(bob_user))
    alice = (Conversation.objects.create(owner=alice_user), session_cookie(alice_user))
    forge = Simulator(0.01)
    try:
        with serving(forge.url) as base:
            quiet = asyncio.run(bobs_replies(base, *bob, asks))
            flooded, answers = asyncio.run(with_flood(base, bob, alice, asks, messages))
    finally:
        forge.stop()
        chat_process.terminate()
    quiet_p95, flooded_p95 = percentile(quiet, 0.95), percentile(flooded, 0.95)
    print(f"reply fairness, {topology()}: bob asks {asks} times, alone and during alice's flood")
    print(
        f"  bob's reply, post -> done: alone p50 {percentile(quiet, 0.5):.2f} s, p95 "
        f"{quiet_p95:.2f} s; during alice's {messages} messages p50 "
        f"{percentile(flooded, 0.5):.2f} s, p95 {flooded_p95:.2f} s, max {max(flooded):.2f} s"
    )
    print(
        f"  ratio {flooded_p95 / quiet_p95:.2f}   (target < 1.5); alice's posts answered: "
        + ", ".join(f"{status}: {count}" for status, count in sorted(answers.items()))
    )


if __name__ == "__main__":
    main()
