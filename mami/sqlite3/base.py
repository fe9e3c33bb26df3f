"""Django's SQLite backend, with a process's writers taking turns in order.

SQLite lets one transaction write at a time; the others retry in its busy
handler, which sleeps 1, 2, 5, ... up to 100 ms between tries. Under load
that is unfair (a newcomer often wins over a writer that has waited for
seconds) and slow (a writer sleeps on after the lock came free). Here every
transaction of the process first takes a FIFO lock per database file, so a
writer waits in line and starts the moment the one before it commits; the
busy handler only still arbitrates between processes.

Transactions are IMMEDIATE (settings), so each one takes SQLite's write
lock at BEGIN anyway: the FIFO lock adds no serialization of its own.
"""

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import OperationalError
from django.db.backends.sqlite3 import base


class WriterLine:
    """A lock granted in the order it was asked for."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiting: deque[threading.Event] = deque()

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held and not self._waiting:
                self._held = True
                return True
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(timeout):
            return True
        with self._mutex:
            if turn.is_set():  # handed over just as the wait ran out
                return True
            self._waiting.remove(turn)
            return False

    def release(self) -> None:
        with self._mutex:
            if self._waiting:
                # Handed straight to the next in line: nobody can cut in.
                self._waiting.popleft().set()
            else:
                self._held = False


_lines: dict[str, WriterLine] = {}
_lines_lock = threading.Lock()


def writer_line(name: str) -> WriterLine:
    with _lines_lock:
        return _lines.setdefault(name, WriterLine())


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._in_line = False

    def _line(self) -> WriterLine | None:
        # An in-memory database belongs to one connection: nobody to queue behind.
        if self.is_in_memory_db():
            return None
        return writer_line(str(self.settings_dict["NAME"]))

    def _start_transaction_under_autocommit(self) -> None:
        line = self._line()
        if line is not None and not self._in_line:
            timeout = float(self.settings_dict["OPTIONS"].get("timeout", 5))
            if not line.acquire(timeout):
                raise OperationalError("database is locked (waited in line for a write)")
            self._in_line = True
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]
        except BaseException:
            self._leave_line()
            raise

    def _leave_line(self) -> None:
        if self._in_line:
            self._in_line = False
            line = self._line()
            if line is not None:
                line.release()

    # A transaction's end, however it ends, lets the next writer go.
    def _commit(self) -> None:
        with self._then_leave_line():
            super()._commit()  # type: ignore[misc]

    def _rollback(self) -> None:
        with self._then_leave_line():
            super()._rollback()  # type: ignore[misc]

    def _close(self) -> None:
        with self._then_leave_line():
            super()._close()  # type: ignore[misc]

    @contextmanager
    def _then_leave_line(self) -> Iterator[None]:
        try:
            yield
        finally:
            self._leave_line()
