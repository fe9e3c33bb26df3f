"""A database that is away for a while (a restart, a failover, a minor
upgrade) is routine, not a bug: every long-lived thread goes on once it
returns. `outage_guard` is the one place that knows how.

On a lost connection (OperationalError, InterfaceError) the thread's
connection is dropped, so its next query opens a fresh one; the outage is
logged once when it starts and once when it ends, however many threads
and attempts meet it; and the caller is told how long to wait before the
next try (`database.backoff()`). A request answered meanwhile gets a 503
(`mami.unavailable`), not a traceback.
"""

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from django.db import InterfaceError, OperationalError, connection

logger = logging.getLogger(__name__)

# What a database away (or a connection it dropped) raises through Django.
OUTAGE_ERRORS = (OperationalError, InterfaceError)


class DatabaseHealth:
    """Whether this process finds the database away, since when, and how
    long its threads should wait between tries."""

    BACKOFF = (0.25, 0.5, 1.0, 2.0, 4.0)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self._failures = 0
        self.outages = 0
        self.back_at: float | None = None

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, where: str, exc: BaseException) -> None:
        with self._lock:
            self._failures += 1
            if self.down_since is not None:
                return
            self.down_since = time.monotonic()
            self.outages += 1
        logger.warning("database unreachable (%s: %s); work is held until it returns", where, exc)

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is None:
                return
            away = time.monotonic() - self.down_since
            self.down_since = None
            self.back_at = time.monotonic()
            self._failures = 0
        logger.warning("database is back after %.1f s", away)

    def settling(self, seconds: float) -> bool:
        """Away now, or back for less than `seconds`: heartbeats written
        before the outage are not yet evidence that anyone is lost."""
        if self.down:
            return True
        return self.back_at is not None and time.monotonic() - self.back_at < seconds

    def backoff(self) -> float:
        """Seconds to wait before the next try while the database is away."""
        return self.BACKOFF[min(self._failures, len(self.BACKOFF)) - 1] if self._failures else 0


database = DatabaseHealth()


def drop_connection() -> None:
    """Close this thread's connection; Django opens a new one on next use."""
    with suppress(Exception):
        connection.close()


@contextmanager
def outage_guard(where: str, *, probe: bool = False) -> Iterator[None]:
    """Around one unit of a thread's work: a lost database ends the unit
    (the caller tries again after `database.backoff()`); anything else
    goes up as before. A `probe` (the worker's heartbeat: a write every
    few seconds) that ends normally declares the outage over; other units
    may not have touched the database at all."""
    try:
        yield
    except OUTAGE_ERRORS as exc:
        drop_connection()
        database.failed(where, exc)
    else:
        if probe:
            database.succeeded()


class OutageLogFilter(logging.Filter):
    """The many places that log a failure with its traceback (a lane task,
    a sweep, a push) meet the same outage at once, attempt after attempt:
    a record whose exception is the database being away becomes part of
    the outage's one warning instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, OUTAGE_ERRORS):
            database.failed(record.name, exc)
            return False
        return True
