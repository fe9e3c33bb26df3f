"""What a queue move costs with many jobs and many watching browsers, and
how an unrelated user's page fares while one user's flood is queued.

1. 1,000 queued jobs in 100 conversations of 100 users, 100 open sockets
   (one per conversation; 80 English, 20 Turkish pages): the CPU time of
   one "the queue moved" refresh, as `imagejobs.broadcast` runs it after a
   transition (snapshot, rendering, channel-layer sends). Target: < 20 ms.
2. One user queues 500 pictures; another user's conversation page is
   requested 200 times: wall time p50 / p95. Target: p95 < 50 ms.

Runs on a throwaway SQLite database with the embedded channel layer, its
queues on an event loop in a thread of their own as in Daphne.

`--models N`: the jobs ask for N checkpoints in turn and a live worker
offers them all (with one loaded), so the positions come from the
switch-aware scheduler's plan instead of the fair order alone.

    .venv/bin/python bench/queue_moves.py [--profile] [--moves-only] [--models N]
"""

import statistics
import sys
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from common import fresh_database, percentile, serve_loop, timed_gets
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from chat.actions import post_message
from chat.intents import ImageRequest
from chat.models import Conversation, OpenSocket
from imagejobs import broadcast
from imagejobs.models import ImageJob
from mami import push

# Setting up thousands of jobs would otherwise queue a refresh per burst;
# the benchmark runs the refresh itself.
settings.MAMI_QUEUE_PUSH_DELAY = 3600


def refresh_function():
    """The refresh a queue move triggers, whatever this version calls it."""
    for name in ("_send_places", "_send_queued_cards"):
        if hasattr(broadcast, name):
            return name, getattr(broadcast, name)
    raise SystemExit("no queue refresh function found in imagejobs.broadcast")


MODELS = int(sys.argv[sys.argv.index("--models") + 1]) if "--models" in sys.argv else 0


def offer_models() -> None:
    """A live worker (this process) whose Forge has the MODELS checkpoints."""
    from imagejobs import workers
    from imagejobs.models import WorkerState

    workers.register("bench/gpu", "http://forge.invalid")
    names = [f"model-{n}" for n in range(MODELS)]
    WorkerState.objects.filter(pk="bench/gpu").update(
        checkpoints=[{"title": name, "model_name": name, "hash": ""} for name in names],
        loaded_checkpoint=names[0],
    )


def queue_moves() -> None:
    users = [get_user_model().objects.create_user(f"u{n}") for n in range(100)]
    conversations = [Conversation.objects.create(owner=user) for user in users]
    if MODELS:
        offer_models()
    for round_ in range(10):
        for n, conversation in enumerate(conversations):
            model = {"model": f"model-{(n + round_) % MODELS}"} if MODELS else None
            post_message(conversation, "/image fox", ImageRequest(f"fox {round_}"), model)
    layer = get_channel_layer()
    now = timezone.now()
    for n, conversation in enumerate(conversations):
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(push.conversation_group(conversation.id), channel)
        OpenSocket.objects.create(
            channel_name=channel,
            user=conversation.owner,
            conversation=conversation,
            language="tr" if n % 5 == 0 else "en",
            opened_at=now,
            seen_at=now,
        )
    # One web process's places relay: a move is one event to it.
    async_to_sync(layer.group_add)(broadcast.PLACES_GROUP, async_to_sync(layer.new_channel)())
    serve_loop()
    name, refresh = refresh_function()
    queued = ImageJob.objects.filter(status="queued").count()
    refresh()  # warm caches, as a running server has them
    cpu = []
    for _ in range(20):
        start = time.process_time()
        refresh()
        cpu.append(time.process_time() - start)
        # Let the in-memory channels drain, as the consumers would.
        layer.channels.clear()
    if "--profile" in sys.argv:
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(refresh)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    print(
        f"queue move ({name}): {queued} queued, {OpenSocket.objects.count()} open sockets, "
        f"{MODELS or 'no'} models asked for"
    )
    print(
        f"  CPU per move: median {statistics.median(cpu) * 1000:.1f} ms, "
        f"max {max(cpu) * 1000:.1f} ms   (target < 20 ms)"
    )


def unrelated_page() -> None:
    flooder = get_user_model().objects.create_user("flooder")
    flood = Conversation.objects.create(owner=flooder)
    for n in range(500):
        post_message(flood, "/image flood", ImageRequest(f"flood {n}"))
    reader = get_user_model().objects.create_user("reader")
    conversation = Conversation.objects.create(owner=reader)
    for n in range(3):
        post_message(conversation, f"/image owl {n}", ImageRequest(f"owl {n}"))
    client = Client()
    client.force_login(reader)
    times = timed_gets(client, f"/conversations/{conversation.id}/", warm=10, times=200)
    queued = ImageJob.objects.filter(status="queued").count()
    print(f"unrelated page while a flood is queued ({queued} queued)")
    print(
        f"  p50 {percentile(times, 0.5) * 1000:.1f} ms, p95 {percentile(times, 0.95) * 1000:.1f} ms"
        "   (target p95 < 50 ms)"
    )


if __name__ == "__main__":
    fresh_database()
    queue_moves()
    if "--moves-only" not in sys.argv:
        unrelated_page()
