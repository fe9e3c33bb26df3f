"""Pushes to the browsers' sockets through the channel layer, from any
thread of any process: the transport both apps use (job cards, replies,
queue moves, logouts), and its health.

Best effort by design: what is pushed is news of what the database already
holds, and a page resyncs from the database when its socket comes back.
"""

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation
from prometheus_client import Counter

logger = logging.getLogger(__name__)

layer_failures = Counter(
    "mami_channel_layer_failures", "Sends to the channel layer that failed in this process"
)

# A channel-layer event: its "type" names the consumer's handler.
Event = Mapping[str, Any]


def conversation_group(conversation_id: uuid.UUID | str) -> str:
    """The channel-layer group of one conversation's sockets."""
    return f"conversation.{conversation_id}"


def asked_key(created_at: datetime | str) -> float:
    """A message's `created_at` as a number (what a pushed element carries
    as `asked`: a page showing only the latest messages gets only theirs),
    whether the database driver gave a datetime or (SQLite, read raw)
    Django's text for it in UTC."""
    if isinstance(created_at, str):
        created_at = datetime.fromisoformat(created_at).replace(tzinfo=UTC)
    return created_at.timestamp()


_server_loop: asyncio.AbstractEventLoop | None = None
_server_loop_lock = threading.Lock()


def set_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Remember the web server's event loop.

    The in-memory channel layer's queues belong to that loop and aren't
    thread-safe: a send from the in-process worker thread must be handed to
    it, or it is delivered seconds late.
    """
    global _server_loop
    with _server_loop_lock:
        _server_loop = loop


def group_send(group: str, event: Event) -> None:
    """Put `event` on the channel layer for `group`, from any thread."""
    group_send_many([(group, event)])


# What each event of a batch adds to MAMI_BROADCAST_TIMEOUT.
SECONDS_PER_SEND = 0.005


def group_send_many(sends: list[tuple[str, Event]]) -> None:
    """Put several events on the channel layer in one go, in order: one
    hop to the server's loop (embedded) or one event loop (a separate
    worker process), not one per event.

    Best effort: the layer carries news of what the database already
    holds, so a failure (Redis restarting, a full or stopped loop) is
    logged once per outage, counted, and never reaches the caller. Pages
    resync from the database when their socket comes back.
    """
    layer = get_channel_layer()
    if layer is None or not sends or not layer_health.worth_trying():
        return
    # Each send costs about a millisecond of this process's CPU with Redis'
    # layer: a batch that is merely long (many cards at once) is not an
    # outage (one was dropped as one, and the pushes after it too).
    timeout = settings.MAMI_BROADCAST_TIMEOUT + SECONDS_PER_SEND * len(sends)

    async def send_all() -> None:
        async with asyncio.timeout(timeout):
            for group, event in sends:
                await layer.group_send(group, dict(event))

    loop = _server_loop
    if loop is None or not loop.is_running():
        loop = _sending_loop()
    try:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(send_all()).add_done_callback(_sent)
            return
        if running is not None:
            # Called from some other event loop (a test's): its own sends.
            async_to_sync(send_all)()
        else:
            # Waiting keeps one sender's events in order.
            asyncio.run_coroutine_threadsafe(send_all(), loop).result(timeout=timeout + 1)
    except Exception as exc:
        layer_health.failed(exc)
    else:
        layer_health.ok()


_sender_loop: asyncio.AbstractEventLoop | None = None


def _sending_loop() -> asyncio.AbstractEventLoop:
    """In a process without the web server's loop (`runworker`), one
    long-lived loop on a thread of its own sends everything: a new loop
    per send (`async_to_sync`) also opened a new Redis connection each
    time, 3.7 ms a send against 0.3 ms."""
    global _sender_loop
    with _server_loop_lock:
        if _sender_loop is None or not _sender_loop.is_running():
            loop = asyncio.new_event_loop()
            started = threading.Event()
            loop.call_soon(started.set)
            threading.Thread(
                target=loop.run_forever, name="mami-channel-sender", daemon=True
            ).start()
            started.wait(5)
            _sender_loop = loop
        return _sender_loop


def _sent(task: "asyncio.Task[None]") -> None:
    if task.cancelled():
        return
    if (exc := task.exception()) is not None:
        layer_health.failed(exc)
    else:
        layer_health.ok()


class LayerHealth:
    """Whether the last send reached the channel layer: one warning when an
    outage starts, one line when it ends, and a count of failed sends.
    During an outage one send a second tries the layer; the others are
    dropped at once instead of each waiting for the layer to fail (a
    progress push comes four times a second)."""

    RETRY_SECONDS = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failures = 0
        self._down_since: float | None = None
        self._tried_at = 0.0

    def worth_trying(self) -> bool:
        if self._down_since is None:
            return True
        with self._lock:
            now = time.monotonic()
            if now - self._tried_at < self.RETRY_SECONDS:
                return False
            self._tried_at = now
            return True

    def failed(self, exc: BaseException) -> None:
        layer_failures.inc()
        with self._lock:
            self.failures += 1
            starting = self._down_since is None
            if starting:
                self._down_since = self._tried_at = time.monotonic()
        if starting:
            logger.warning(
                "channel layer unavailable (%s: %s): live updates are paused, jobs go on",
                type(exc).__name__,
                exc,
            )

    def ok(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            since, self._down_since = self._down_since, None
        if since is not None:
            logger.warning(
                "channel layer back after %.1fs: live updates resume", time.monotonic() - since
            )


layer_health = LayerHealth()


def render_in_languages(template: str, context: Mapping[str, Any]) -> dict[str, str]:
    """`template` rendered in every configured language, by language code,
    so each socket gets its page's own (`in_language` picks it)."""
    values = dict(context)
    rendered = {}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            rendered[code] = str(render_to_string(template, values))
    return rendered


def in_language[T](rendered: Mapping[str, T], language: str, default: T) -> T:
    """A socket's own rendering: its page's language, else the site's
    default, else `default` (rendered in no language at all)."""
    found = rendered.get(language)
    if found is None:
        found = rendered.get(settings.LANGUAGE_CODE, default)
    return found
