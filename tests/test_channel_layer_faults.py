"""The channel layer carries news of what the database already holds: when
it fails, pushes are dropped and counted, and no job's outcome changes."""

import asyncio
import logging

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import Client

from imagejobs import aftercommit
from imagejobs.models import ImageJob, Status
from imagejobs.worker import Worker
from mami import push
from mami.channel_layer import InMemoryChannelLayer
from tests.helpers import free_port, make_conversation, open_page, request_picture

pytestmark = pytest.mark.django_db(transaction=True)

UNAVAILABLE = "channel layer unavailable"


@pytest.fixture
def fresh_layer_health(monkeypatch):  # type: ignore[no-untyped-def]
    health = push.LayerHealth()
    monkeypatch.setattr(push, "layer_health", health)
    return health


@pytest.fixture
def unreachable_redis_layer(settings):  # type: ignore[no-untyped-def]
    """A Redis channel layer whose server is down: connections are refused."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},
        }
    }


def test_a_dead_channel_layer_never_fails_a_job(
    alice, forge, caplog, fresh_layer_health, unreachable_redis_layer, settings
):
    settings.FORGE_PROGRESS_INTERVAL = 0.02
    forge.seconds_per_step = 0.02
    conversation = make_conversation(alice)
    open_page(conversation)  # else no push is tried at all
    jobs = [request_picture(conversation, f"fox {n}", steps=10) for n in range(3)]
    worker = Worker(forge.url)
    with caplog.at_level(logging.WARNING, logger="imagejobs.broadcast"):
        while worker.step():
            pass
    statuses = ImageJob.objects.filter(pk__in=[job.pk for job in jobs]).values_list(
        "status", flat=True
    )
    assert list(statuses) == [Status.COMPLETE] * 3
    assert forge.stats.completed == 3, "each picture drawn once"
    # Requests, claims, progress and completions all tried to push: one
    # warning for the whole outage, and the failures counted for /metrics.
    warnings = [r for r in caplog.records if UNAVAILABLE in r.getMessage()]
    assert len(warnings) == 1
    assert fresh_layer_health.failures >= 1


def test_the_page_still_takes_requests_while_the_layer_is_down(
    alice, fresh_layer_health, unreachable_redis_layer
):
    client = Client()
    client.force_login(alice)
    conversation = make_conversation(alice)
    open_page(conversation)
    response = client.post(
        f"/conversations/{conversation.id}/messages/",
        {"text": "/image a lighthouse"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert "#1 in line" in response.content.decode()
    assert ImageJob.objects.filter(status=Status.QUEUED).count() == 1
    # The push is tried after the answer, off the request's path.
    assert aftercommit.lane.drain()
    assert fresh_layer_health.failures >= 1


def test_pushes_resume_when_the_layer_is_back(
    alice, forge, caplog, fresh_layer_health, unreachable_redis_layer, settings
):
    conversation = make_conversation(alice)
    open_page(conversation)
    request_picture(conversation, "fox")
    # Pushes are tried just after the commit, off the request's path.
    assert aftercommit.lane.drain()
    assert fresh_layer_health.failures >= 1
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "mami.channel_layer.InMemoryChannelLayer"}}
    fresh_layer_health.RETRY_SECONDS = 0
    with caplog.at_level(logging.WARNING, logger="imagejobs.broadcast"):
        request_picture(conversation, "owl")
        assert aftercommit.lane.drain()
    assert any("channel layer back" in r.getMessage() for r in caplog.records)
    failures = fresh_layer_health.failures
    request_picture(conversation, "cat")
    assert aftercommit.lane.drain()
    assert fresh_layer_health.failures == failures


class SlowLayer(InMemoryChannelLayer):
    """Each group send takes a couple of milliseconds, as one costs with
    Redis' layer when a queue move reaches many conversations."""

    async def group_send(self, group: str, message: dict) -> None:
        await asyncio.sleep(0.002)
        await super().group_send(group, message)


def test_a_long_batch_is_delivered_not_taken_for_an_outage(settings, fresh_layer_health):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "tests.test_channel_layer_faults.SlowLayer"}}
    settings.MAMI_BROADCAST_TIMEOUT = 0.1
    layer = get_channel_layer()
    pages = [f"test.page!{n}" for n in range(100)]
    for n, page in enumerate(pages):
        async_to_sync(layer.group_add)(f"conversation.{n}", page)
    # 100 sends of 2 ms or more: longer than the timeout, and not stuck.
    push.group_send_many(
        [(f"conversation.{n}", {"type": "queue.places"}) for n in range(len(pages))]
    )
    assert fresh_layer_health.failures == 0
    assert all(layer.channels[page].qsize() == 1 for page in pages), "every page got its place"
