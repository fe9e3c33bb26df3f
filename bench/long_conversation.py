"""A conversation with 10,000 messages: what its page costs.

Target: < 50 ms a page view (median, over HTTP from the server as
`./scripts/run` serves it), a constant number of queries, a page whose size
does not grow with the conversation. In process (Django's test client) too,
for the queries and a profile's view of the same work.

    .venv/bin/python bench/long_conversation.py [--production] [--messages 10000]
"""

import statistics
from datetime import timedelta

import httpx
from common import (
    Simulator,
    fresh_database,
    option,
    percentile,
    serving,
    timed_gets,
    topology,
)
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.actions import post_message
from chat.intents import ImageRequest
from chat.models import Conversation, Message


def main() -> None:
    fresh_database()
    count = int(option("--messages", "10000"))
    user = get_user_model().objects.create_user("reader")
    conversation = Conversation.objects.create(owner=user, title="long")
    start = timezone.now() - timedelta(days=1)
    Message.objects.bulk_create(
        (
            Message(
                conversation=conversation,
                role="user" if n % 2 == 0 else "assistant",
                text=f"message {n}: " + "words " * 8,
                created_at=start + timedelta(seconds=n),
            )
            for n in range(count)
        ),
        batch_size=1000,
    )
    for n in range(3):  # a few live cards at the end
        post_message(conversation, "/image", ImageRequest(f"a fox {n}"))
    client = Client()
    client.force_login(user)
    url = f"/conversations/{conversation.id}/"
    times = timed_gets(client, url, warm=5, times=50)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    print(f"conversation page, {topology()}: {count:,} messages")
    p50, p95 = statistics.median(times) * 1000, percentile(times, 0.95) * 1000
    print(
        f"  in process: p50 {p50:.1f} ms, p95 {p95:.1f} ms, {len(queries)} queries, "
        f"{len(response.content) / 1024:.0f} kB   (constant queries and size)"
    )
    sim = Simulator(0.25)
    with serving(sim.url) as base:
        cookies = {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}
        with httpx.Client(base_url=base, cookies=cookies) as http:
            times = timed_gets(http, url, warm=5, times=50)
    sim.stop()
    p50, p95 = statistics.median(times) * 1000, percentile(times, 0.95) * 1000
    print(f"  over HTTP: p50 {p50:.1f} ms, p95 {p95:.1f} ms   (target p50 < 50 ms)")


if __name__ == "__main__":
    main()
