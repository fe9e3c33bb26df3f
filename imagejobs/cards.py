"""Rendering of job cards: the same template for the page and the socket."""

import threading
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.template.loader import get_template, render_to_string
from django.utils import translation

from mami.push import render_in_languages

from . import previews
from .limits import MAX_VARIATIONS
from .models import PREVIEW_UNREAD, ImageJob, Status
from .positions import QueueSnapshot
from .timespan import duration_parts

CARD_TEMPLATE = "imagejobs/card.html"
PLACE_TEMPLATE = f"{CARD_TEMPLATE}#queued-place"
# Stands for a job while a place fragment is rendered once for many jobs.
_ANY_JOB = uuid.UUID("00000000-0000-0000-0000-00000000a11e")
_PLACE_CACHE_LIMIT = 20_000
_place_cache: dict[tuple[object, ...], list[str]] = {}
_place_cache_lock = threading.Lock()


def card_context(job: ImageJob, queue: QueueSnapshot) -> dict[str, object]:
    context: dict[str, object] = {
        "job": job,
        "Status": Status,
        "max_attempts": settings.FORGE_MAX_ATTEMPTS,
    }
    if job.status == Status.QUEUED:
        context["position"] = queue.position(job.id)
        context["eta_seconds"] = queue.eta_seconds(job.id)
        context["unavailable_until"] = queue.unavailable_until
        context["no_workers"] = queue.no_workers
    elif job.status == Status.PROCESSING:
        context["eta_seconds"] = job.eta_seconds
        # Calls to a Forge that is down don't count against the budget
        # (the job waits for the service), so they may go past it.
        context["attempt"] = min(job.attempts, settings.FORGE_MAX_ATTEMPTS)
        # The worker's own copy knows its latest preview; a page asks the table.
        key = job.preview_key
        context["preview_key"] = previews.latest_key(job.id) if key is PREVIEW_UNREAD else key
    elif job.status == Status.COMPLETE:
        context["variation_counts"] = range(1, MAX_VARIATIONS + 1)
    return context


def render_card(job: ImageJob, queue: QueueSnapshot) -> str:
    """The card in the active language."""
    return render_to_string(CARD_TEMPLATE, card_context(job, queue))


def render_card_languages(job: ImageJob, queue: QueueSnapshot) -> dict[str, str]:
    """The card in every configured language, so each socket gets its own."""
    return render_in_languages(CARD_TEMPLATE, card_context(job, queue))


def render_places(
    jobs: Iterable[tuple[str, int]], queue: QueueSnapshot, languages: Iterable[str]
) -> dict[str, list[str]]:
    """The `queued-place` part of the cards of `jobs` ((id as hex, place in
    line) pairs), in order, in each of `languages`: what a queue move
    changes on a conversation's cards.

    The fragment depends only on the place, the ETA as it reads and the
    queue's notice, so each distinct one is rendered once per language and
    reused for every job (and every later move) that reads the same; a
    job's fragment is then its id (hex, as the element's id has it) put
    between two cached strings.
    """
    languages = list(languages)
    unavailable = queue.unavailable_until.isoformat() if queue.unavailable_until else None
    notice = (queue.no_workers, unavailable)
    joined: dict[str, list[str]] = {language: [] for language in languages}
    # A thousand jobs per move: the loop stays lean.
    for job_hex, position in jobs:
        eta = queue.eta_of(job_hex, position)
        reads = (notice, position, duration_parts(eta))
        for language in languages:
            parts = _place_cache.get((language, reads)) or _render_place(
                language, reads, eta, queue
            )
            joined[language].append(job_hex.join(parts))
    return joined


def _render_place(
    language: str, reads: tuple[object, ...], eta: float, queue: QueueSnapshot
) -> list[str]:
    """The place fragment for `reads`, split where the job's id goes."""
    _notice, position, _eta = reads
    context = {
        "job": {"id": _ANY_JOB},
        "position": position,
        "eta_seconds": eta,
        "unavailable_until": queue.unavailable_until,
        "no_workers": queue.no_workers,
    }
    with translation.override(language):
        parts = get_template(PLACE_TEMPLATE).render(context).split(_ANY_JOB.hex)
    with _place_cache_lock:
        if len(_place_cache) >= _PLACE_CACHE_LIMIT:
            _place_cache.clear()
        _place_cache[(language, reads)] = parts
    return parts
