"""Pushing job cards to the conversations that show them, and queue moves
to every page that shows a place in line.

Everything sent is rendered from the database after the commit, so a late
send still shows the newest state. The transport is `mami.push`.
"""

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import partial
from typing import Literal, TypedDict

from django.conf import settings

from mami import push
from mami.push import asked_key, conversation_group

from . import aftercommit, fair_order, positions
from .cards import render_card_languages, render_places
from .models import UNFINISHED_STATUSES, ImageJob, Status

logger = logging.getLogger(__name__)


class CardPayload(TypedDict):
    """One job's card as the sockets get it: the consumers compare
    (version, progress) to never send an older card after a newer one."""

    id: str
    version: int
    progress: int
    # When its message was written (`asked_key`): a page showing only the
    # conversation's latest messages gets only the cards it shows.
    asked: float
    # The card rendered in each configured language, by language code.
    html: dict[str, str]


class CardsEvent(TypedDict):
    """The `job.cards` channel-layer event: cards for one conversation."""

    type: Literal["job.cards"]
    cards: list[CardPayload]


class PlacesEvent(TypedDict):
    """The `queue.places` event: after a queue move, the place-in-line part
    of a conversation's queued cards, joined, in each language its pages
    use. `at` orders events: a consumer never sends an older one after a
    newer."""

    type: Literal["queue.places"]
    at: float
    # Each fragment's card's `asked` (see CardPayload), in fragment order.
    asked: list[float]
    # The fragments in each language the conversation's pages use.
    html: dict[str, list[str]]


class MovedEvent(TypedDict):
    """A queue move, to PLACES_GROUP: the places event of every watched
    conversation (by id, hex), for each web process's relay to hand out
    (`chat.places_relay`)."""

    type: Literal["queue.moved"]
    at: float
    places: dict[str, PlacesEvent]


# The group every web process's places relay listens on.
PLACES_GROUP = "queue.moved"


# Who watches which conversation, in which languages: {conversation id:
# {language, ...}}, of every conversation or of those given. Provided by
# the app that owns the sockets (chat), so a queue move or a card renders
# only for conversations someone is looking at.
Audience = Callable[[Iterable[uuid.UUID] | None], dict[uuid.UUID, set[str]]]
_audience: Audience | None = None


def set_audience(audience: Audience) -> None:
    global _audience
    _audience = audience


def _card_payload(job: ImageJob, snapshot: positions.QueueSnapshot) -> CardPayload:
    return {
        "id": str(job.id),
        "version": job.version,
        "progress": job.progress,
        "asked": asked_key(job.message.created_at),
        "html": render_card_languages(job, snapshot),
    }


def watched(jobs: Iterable[ImageJob]) -> list[ImageJob]:
    """Those of `jobs` whose conversation a page has open now. A page that
    opens later reads its cards from the database, after its socket is
    registered, so a card nobody watched is never missed."""
    jobs = list(jobs)
    if _audience is None or not jobs:
        return jobs
    audience = _audience({job.message.conversation_id for job in jobs})
    return [job for job in jobs if job.message.conversation_id in audience]


def send_cards(jobs: list[ImageJob], snapshot: positions.QueueSnapshot) -> None:
    """Send each watched job's card to its conversation, one event per
    conversation."""
    _send_cards(watched(jobs), snapshot)


def _send_cards(jobs: list[ImageJob], snapshot: positions.QueueSnapshot) -> None:
    by_conversation: dict[uuid.UUID, list[CardPayload]] = {}
    for job in jobs:
        by_conversation.setdefault(job.message.conversation_id, []).append(
            _card_payload(job, snapshot)
        )
    push.group_send_many(
        [
            (conversation_group(conversation_id), {"type": "job.cards", "cards": cards})
            for conversation_id, cards in by_conversation.items()
        ]
    )


def job_changed_on_commit(job_id: uuid.UUID, *, queue_moved: bool = True) -> None:
    """Push the job's card once the current transaction commits (at once
    outside one), from the after-commit lane: rendered from the row as it
    is then, so a late send still shows the newest state, and a
    rolled-back change is never shown."""
    aftercommit.on_commit(partial(job_changed, job_id, queue_moved=queue_moved))


def jobs_changed_on_commit(job_ids: list[uuid.UUID]) -> None:
    """Push many jobs' cards after the commit (one event per conversation)
    and one queue refresh."""
    aftercommit.on_commit(partial(_jobs_changed, job_ids))


def _jobs_changed(job_ids: list[uuid.UUID]) -> None:
    jobs = list(ImageJob.objects.filter(pk__in=job_ids).select_related("message"))
    send_cards(jobs, positions.QueueSnapshot())
    queue_changed()


def job_changed(job_id: uuid.UUID, *, queue_moved: bool = True) -> None:
    """Push the job's current card at once; if the queue moved, every queued
    card too (positions and ETAs are derived, so they all change together),
    coalesced with the other moves of the same moment."""
    # Most changes happen with no page open on their conversation (API
    # clients, closed tabs): that is asked first, with the lightest read.
    conversation_id = (
        ImageJob.objects.filter(pk=job_id)
        .values_list("message__conversation_id", flat=True)
        .first()
    )
    if conversation_id is None or (_audience is not None and not _audience({conversation_id})):
        job = None
    else:
        job = ImageJob.objects.select_related("message").filter(pk=job_id).first()
    if job is not None:
        # Its own place is one count: a submission costs the same whatever
        # the queue's length.
        queued = job.status == Status.QUEUED
        _send_cards([job], positions.snapshot(only=[job]) if queued else positions.QueueSnapshot())
    if queue_moved:
        queue_changed()


def job_progress(job: ImageJob) -> None:
    """Push a processing job's card from the worker's in-memory copy.

    Used between the (rate-limited) progress writes; `version` is unchanged
    and `progress` only grows, which is what the consumers' guard checks.
    """
    if job.status != Status.PROCESSING:
        return
    send_cards([job], positions.QueueSnapshot())


def conversation_cards(
    conversation_id: uuid.UUID,
    *,
    job_ids: list[uuid.UUID] | None = None,
    since: datetime | None = None,
) -> list[CardPayload]:
    """Card payloads of a conversation's unfinished jobs (asked `since`, if
    given: the page shows only the latest messages), or of the given jobs
    if they belong to it: what a socket needs to catch up."""
    jobs_query = ImageJob.objects.filter(message__conversation_id=conversation_id).select_related(
        "message"
    )
    if job_ids is None:
        jobs_query = jobs_query.filter(status__in=UNFINISHED_STATUSES)
        if since is not None:
            jobs_query = jobs_query.filter(message__created_at__gte=since)
    else:
        jobs_query = jobs_query.filter(pk__in=job_ids)
    jobs = list(jobs_query.order_by("created_at"))
    queued = [job for job in jobs if job.status == Status.QUEUED]
    # Each page that opens counts its own cards' places: a thousand pages
    # opening at once must not each read the whole queue.
    snapshot = (
        positions.snapshot(only=queued, reuse_facts=True) if queued else positions.QueueSnapshot()
    )
    return [_card_payload(job, snapshot) for job in jobs]


def _send_places() -> None:
    """After a queue move: each watched conversation's new places (and
    ETAs) of its queued cards, rendered once per language in use, in one
    event that each web process's relay hands out; conversations nobody
    watches cost nothing."""
    at = time.time()
    if _audience is None:
        every_language = {code for code, _name in settings.LANGUAGES}
        watching = None
    else:
        watching = {
            conversation.hex: languages for conversation, languages in _audience(None).items()
        }
        if not watching:
            return
    line, rows = fair_order.read_line("message__conversation_id", "message__created_at")
    snapshot = positions.snapshot(line)
    places_of = snapshot.positions
    by_conversation: dict[str, list[tuple[str, int]]] = {}
    asked: dict[str, list[float]] = {}
    for job, (conversation, created_at) in zip(line, rows, strict=True):
        if watching is None or conversation in watching:
            by_conversation.setdefault(conversation, []).append((job.id, places_of[job.id]))
            asked.setdefault(conversation, []).append(asked_key(created_at))
    places: dict[str, PlacesEvent] = {}
    for conversation, jobs in by_conversation.items():
        languages = watching[conversation] if watching is not None else every_language
        places[conversation] = {
            "type": "queue.places",
            "at": at,
            "asked": asked[conversation],
            "html": render_places(jobs, snapshot, languages),
        }
    if places:
        push.group_send(PLACES_GROUP, {"type": "queue.moved", "at": at, "places": places})


class _Coalescer:
    """Runs `action` at most once per `delay`, `delay` after the first request.

    A burst of transitions (a worker finishing, many users enqueueing)
    becomes one refresh of the queued cards' places instead of one per
    transition;
    the refresh reads the database when it runs, so nothing is lost by
    merging. Keeps the channel layer's per-process queues from overflowing.
    """

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def request(self, delay: float) -> None:
        if delay <= 0:
            self.action()
            return
        with self._lock:
            if self._timer is not None:
                return
            # Run on the after-commit lane: in order with the cards, and
            # paused while a worker claims.
            self._timer = threading.Timer(delay, aftercommit.lane.submit, [self._run])
            self._timer.daemon = True
            self._timer.start()

    def _run(self) -> None:
        with self._lock:
            self._timer = None
        try:
            self.action()
        except Exception:
            logger.exception("refreshing the queued cards failed")

    def flush(self) -> None:
        """Run a pending refresh now (before a process stops, so no move
        goes unannounced)."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            self._run()


_queue_refresh = _Coalescer(_send_places)


def flush_queue_refresh() -> None:
    _queue_refresh.flush()


def queue_changed() -> None:
    """Send every watched queued card's new place (soon): positions, ETAs or
    availability moved."""
    _queue_refresh.request(settings.MAMI_QUEUE_PUSH_DELAY)
