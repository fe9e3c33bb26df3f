"""Where replies are written: a few threads of the web process that took
the message, never the request itself. Any web process can serve the
pages meanwhile: the text is in the database and the pushes go through
the channel layer. A process that dies leaves its replies to
`reply_writer.fail_orphaned_replies`, which every runner runs now and then.

The chat model is shared as the GPU is: when a thread comes free it takes
the waiting reply of the user with the fewest being written now, the one
who has waited longest among equals (`FairLine`). One user's flood of
messages then waits behind itself, not in front of everyone else's, and
`chat.reply_limits` bounds how much of it there can be.

A reply waiting for a thread is kept alive (`reply_states.keep_waiting`):
the orphan sweep fails only replies no live process is looking after.
"""

import logging
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field

from django.conf import settings
from django.db import close_old_connections, connection

from . import reply_states
from .reply_writer import Writer, fail_orphaned_replies

logger = logging.getLogger(__name__)

# How often a process that writes replies looks for orphaned ones.
SWEEP_SECONDS = 30.0
# How soon a Stop asked of a reply still waiting for its turn ends it.
STOP_LOOK_SECONDS = 0.5


@dataclass
class FairLine:
    """Replies waiting for a writer, per user, and how many of each user's
    are being written. Not thread-safe: the runner holds its lock."""

    waiting: dict[int, deque[tuple[int, uuid.UUID]]] = field(default_factory=dict)
    writing: Counter[int] = field(default_factory=Counter)
    _arrivals: int = 0

    def put(self, owner_id: int, message_id: uuid.UUID) -> None:
        self._arrivals += 1
        self.waiting.setdefault(owner_id, deque()).append((self._arrivals, message_id))

    def take(self) -> tuple[int, uuid.UUID] | None:
        """The next reply to write, now counted as being written."""
        if not self.waiting:
            return None
        owner_id = min(
            self.waiting, key=lambda owner: (self.writing[owner], self.waiting[owner][0][0])
        )
        mine = self.waiting[owner_id]
        _arrival, message_id = mine.popleft()
        if not mine:
            del self.waiting[owner_id]
        self.writing[owner_id] += 1
        return owner_id, message_id

    def done(self, owner_id: int) -> None:
        self.writing[owner_id] -= 1
        if self.writing[owner_id] <= 0:
            del self.writing[owner_id]

    def remove(self, message_id: uuid.UUID) -> bool:
        """Take a waiting reply out of the line; False if it is not waiting."""
        for owner_id, mine in self.waiting.items():
            for entry in mine:
                if entry[1] == message_id:
                    mine.remove(entry)
                    if not mine:
                        del self.waiting[owner_id]
                    return True
        return False

    def waiting_ids(self) -> list[uuid.UUID]:
        return [message_id for mine in self.waiting.values() for _arrival, message_id in mine]

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.writing


_changed = threading.Condition()
_line = FairLine()
_started = False


def submit(message_id: uuid.UUID, owner_id: int) -> None:
    """Write this reply (of the user `owner_id`) when its turn comes."""
    global _started
    with _changed:
        if not _started:
            _started = True
            for number in range(settings.CHAT_REPLY_WORKERS):
                threading.Thread(target=_writer, name=f"mami-reply-{number}", daemon=True).start()
            threading.Thread(target=_keeper, name="mami-reply-keeper", daemon=True).start()
        _line.put(owner_id, message_id)
        _changed.notify_all()


def _writer() -> None:
    while True:
        with _changed:
            while (turn := _line.take()) is None:
                _changed.wait()
        owner_id, message_id = turn
        try:
            Writer(message_id).run()
        except Exception:
            logger.exception("writing reply %s failed", message_id)
        finally:
            close_old_connections()
            with _changed:
                _line.done(owner_id)
                _changed.notify_all()


def _keeper() -> None:
    """As long as the process lives: ends at once the waiting replies whose
    Stop was asked, keeps the others alive, and sweeps for orphaned ones."""
    last_kept = last_sweep = 0.0
    while True:
        time.sleep(STOP_LOOK_SECONDS)
        try:
            with _changed:
                waiting = _line.waiting_ids()
            if waiting:
                _stop_waiting(reply_states.stop_asked(waiting))
            # Well inside the quiet time after which a reply is an orphan.
            if waiting and time.monotonic() - last_kept >= min(
                5.0, settings.CHAT_MODEL_TIMEOUT / 4
            ):
                last_kept = time.monotonic()
                reply_states.keep_waiting(waiting)
            if time.monotonic() - last_sweep >= SWEEP_SECONDS:
                last_sweep = time.monotonic()
                fail_orphaned_replies()
        except Exception:
            logger.exception("looking after the waiting replies failed")
            connection.close()
        finally:
            # Kept no longer than CONN_MAX_AGE, and checked, as a request's.
            close_old_connections()


def _stop_waiting(message_ids: list[uuid.UUID]) -> None:
    for message_id in message_ids:
        with _changed:
            taken = _line.remove(message_id)
            if taken:
                _changed.notify_all()
        if taken:
            # Ends it as stopped without asking the model.
            Writer(message_id).run()


def wait_idle(timeout: float = 30.0) -> None:
    """Until every reply submitted so far is written. A test seam: tests
    wait for the replies they started before they look."""
    with _changed:
        _changed.wait_for(lambda: _line.idle, timeout=timeout)
