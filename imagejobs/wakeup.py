"""Waking idle workers the moment there is a job for them.

In the worker's own process (the embedded topology) a commit sets an event
the idle worker waits on. Across processes on PostgreSQL the same commit
sends a NOTIFY that a listener thread in each worker process turns into
that event. The worker's idle poll stays as the fallback (SQLite with a
separate worker process, a listener reconnecting).
"""

import logging
import threading
from collections.abc import Callable

from django.db import connection, transaction

logger = logging.getLogger(__name__)

CHANNEL = "mami_queue"

_lock = threading.Lock()
_waiting: set[Callable[[], object]] = set()


def subscribe(wake: Callable[[], object]) -> None:
    """Call `wake` (quick, from any thread) whenever a job may be waiting;
    `unsubscribe` it when done."""
    with _lock:
        _waiting.add(wake)


def unsubscribe(wake: Callable[[], object]) -> None:
    with _lock:
        _waiting.discard(wake)


def notify() -> None:
    """Wake every worker of this process."""
    with _lock:
        wakes = list(_waiting)
    for wake in wakes:
        wake()


def notify_on_commit() -> None:
    """Wake the workers once the current transaction commits: this
    process's at once, other processes' through PostgreSQL (a NOTIFY is
    delivered at commit, and never if the transaction rolls back)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [CHANNEL])
    transaction.on_commit(notify, robust=True)


class PostgresListener:
    """A thread holding its own connection that LISTENs on `CHANNEL` and
    calls `notify` on each notification, reconnecting after a failure."""

    RECONNECT_SECONDS = 1.0

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.thread = threading.Thread(target=self._run, name="mami-wakeup-listener", daemon=True)

    def start(self) -> "PostgresListener":
        self.thread.start()
        return self

    def _run(self) -> None:
        import psycopg

        params = connection.get_connection_params()
        failing = False
        while not self.stop.is_set():
            try:
                with psycopg.connect(**params, autocommit=True) as listener:
                    listener.execute(f"LISTEN {CHANNEL}")
                    if failing:
                        logger.info("wake-up listener reconnected")
                        failing = False
                    # Whatever was committed while we were not listening.
                    notify()
                    while not self.stop.is_set():
                        for _ in listener.notifies(timeout=0.5, stop_after=1):
                            notify()
            except Exception as exc:
                if not failing:
                    logger.warning(
                        "wake-up listener lost its connection (%s); polling meanwhile", exc
                    )
                    failing = True
                self.stop.wait(self.RECONNECT_SECONDS)
