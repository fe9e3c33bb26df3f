"""Where replies are written: a few threads of the web process that took
the message, never the request itself. Any web process can serve the
pages meanwhile: the text is in the database and the pushes go through
the channel layer. A process that dies leaves its replies to
`reply_writer.fail_orphaned_replies`, which every runner runs now and then."""

import logging
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait

from django.conf import settings
from django.db import close_old_connections

from .reply_writer import Writer, fail_orphaned_replies

logger = logging.getLogger(__name__)

# How often a process that writes replies looks for orphaned ones.
SWEEP_SECONDS = 30.0

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pending: set[Future[None]] = set()
_last_sweep = 0.0


def submit(message_id: uuid.UUID) -> None:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=settings.CHAT_REPLY_WORKERS, thread_name_prefix="mami-reply"
            )
        future = _pool.submit(_write, message_id)
        _pending.add(future)
    future.add_done_callback(_forget)


def _forget(future: "Future[None]") -> None:
    with _lock:
        _pending.discard(future)


def _write(message_id: uuid.UUID) -> None:
    global _last_sweep
    try:
        Writer(message_id).run()
        if time.monotonic() - _last_sweep >= SWEEP_SECONDS:
            _last_sweep = time.monotonic()
            fail_orphaned_replies()
    except Exception:
        logger.exception("writing reply %s failed", message_id)
    finally:
        close_old_connections()


def wait_idle(timeout: float = 30.0) -> None:
    """Until every reply submitted so far is written. A test seam: tests
    wait for the replies they started before they look."""
    with _lock:
        pending = list(_pending)
    wait(pending, timeout=timeout)
