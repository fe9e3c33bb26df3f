"""Work that follows a commit without holding up whoever committed.

A transition's bookkeeping (re-ranking the owner's queue, rendering and
pushing cards) is news of what the database already holds, so it need not
run in the thread that committed: the worker goes on to feed the GPU and a
request answers its user while one thread per process does it, in the
order it was asked for.
"""

import logging
import queue
import threading
import time
from collections.abc import Callable
from functools import partial

from django.db import connection, connections, transaction

logger = logging.getLogger(__name__)

Task = Callable[[], object]

# The longest a pause holds the lane up, whatever its holder does.
MAX_PAUSE_SECONDS = 1.0

# A connection idle longer than this is checked before use: the database
# may have restarted meanwhile, and a lost rerank would leave the order stale.
_CHECK_AFTER_IDLE_SECONDS = 1.0


class Lane:
    """One daemon thread running tasks in submission order. Started on the
    first task, so a process that never commits has no such thread.

    A worker pauses the lane from the moment a picture is drawn until the
    next one is on its way to the GPU: the claim in between then has the
    interpreter and the database to itself (a busy thread costs a waiting
    one up to 5 ms per query it makes, Python's switch interval).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: queue.SimpleQueue[Task] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pauses = 0
        self._running = threading.Event()
        self._running.set()

    def pause(self) -> None:
        """Hold tasks back until `resume` (or MAX_PAUSE_SECONDS)."""
        with self._lock:
            self._pauses += 1
            self._running.clear()

    def resume(self) -> None:
        with self._lock:
            self._pauses = max(self._pauses - 1, 0)
            if self._pauses == 0:
                self._running.set()

    def resume_all(self) -> None:
        """End every pause (a worker that stopped without resuming). A test
        seam: tests/conftest.py resets the lane between tests."""
        with self._lock:
            self._pauses = 0
            self._running.set()

    def wait_running(self, timeout: float = MAX_PAUSE_SECONDS) -> None:
        """Wait while the lane is paused (bounded), as the lane's own
        thread does before each task; for other bookkeeping threads."""
        self._running.wait(timeout)

    def submit(self, task: Task) -> None:
        self._tasks.put(task)
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every task submitted so far has run (a process about
        to stop, a test about to look); False on timeout."""
        if self._thread is None or threading.current_thread() is self._thread:
            return True
        done = threading.Event()
        self.submit(done.set)
        return done.wait(timeout)

    def close_connections(self, timeout: float = 30.0) -> bool:
        """Drain, then close the lane thread's database connections. A test
        seam: a test database cannot be dropped while they are open."""
        if self._thread is None:
            return True
        self.submit(connections.close_all)
        return self.drain(timeout)

    def _run(self) -> None:
        last_task = time.monotonic()
        while True:
            task = self._tasks.get()
            self.wait_running()
            if time.monotonic() - last_task > _CHECK_AFTER_IDLE_SECONDS:
                _drop_unusable_connection()
            try:
                task()
            except Exception:
                logger.exception("%s: a task failed", self.name)
                # A failed query may have left the connection unusable.
                _drop_unusable_connection()
            last_task = time.monotonic()


def keep_connection_usable() -> None:
    """Keep a worker's database connection from job to job (opening one
    cost 15-50 ms of GPU time per job); replace it only once it failed."""
    if connection.errors_occurred:
        if connection.connection is not None and connection.is_usable():
            connection.errors_occurred = False
        else:
            connection.close()


def _drop_unusable_connection() -> None:
    if connection.connection is not None and not connection.is_usable():
        connection.close()


lane = Lane("mami-after-commit")


def on_commit(task: Task) -> None:
    """Run `task` on the lane once the current transaction commits (at
    once outside one); never if it rolls back."""
    transaction.on_commit(partial(lane.submit, task), robust=True)
