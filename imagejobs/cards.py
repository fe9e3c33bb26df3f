"""Rendering of job cards: the same template for the page and the socket."""

import threading
import uuid
from collections.abc import Iterable

from django.conf import settings
from django.template.loader import get_template, render_to_string
from django.utils import translation

from .models import ImageJob, Status
from .queue import QueueSnapshot
from .timespan import duration_parts

CARD_TEMPLATE = "imagejobs/card.html"
PLACE_TEMPLATE = f"{CARD_TEMPLATE}#queued-place"
# Stands for a job id while a place fragment is rendered once for many jobs.
_ANY_JOB = "00000000-0000-0000-0000-00000000a11e"
_PLACE_CACHE_LIMIT = 20_000
_place_cache: dict[tuple[object, ...], str] = {}
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
    return context


def render_card(job: ImageJob, queue: QueueSnapshot) -> str:
    """The card in the active language."""
    return render_to_string(CARD_TEMPLATE, card_context(job, queue))


def render_card_languages(job: ImageJob, queue: QueueSnapshot) -> dict[str, str]:
    """The card in every configured language, so each socket gets its own."""
    context = card_context(job, queue)
    rendered = {}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            rendered[code] = render_to_string(CARD_TEMPLATE, context)
    return rendered


def render_places(
    jobs: Iterable[uuid.UUID], queue: QueueSnapshot, languages: Iterable[str]
) -> dict[uuid.UUID, dict[str, str]]:
    """The `queued-place` part of each queued job's card (its place in line
    and ETA, or the queue's notice), in each of `languages`: what a queue
    move changes on a card.

    The fragment depends only on the place, the ETA as it reads and the
    queue's notice, so each distinct one is rendered once per language and
    reused for every job (and every later move) that reads the same.
    """
    languages = list(languages)
    unavailable = queue.unavailable_until.isoformat() if queue.unavailable_until else None
    places: dict[uuid.UUID, dict[str, str]] = {}
    for job_id in jobs:
        position = queue.position(job_id)
        if position is None:
            continue
        eta = queue.eta_seconds(job_id)
        reads = (position, duration_parts(eta) if eta is not None else None, unavailable)
        places[job_id] = {
            language: _place(language, reads, position, eta, queue).replace(_ANY_JOB, str(job_id))
            for language in languages
        }
    return places


def _place(
    language: str, reads: tuple[object, ...], position: int, eta: float | None, queue: QueueSnapshot
) -> str:
    key = (language, queue.no_workers, *reads)
    cached = _place_cache.get(key)
    if cached is not None:
        return cached
    context = {
        "job": {"id": _ANY_JOB},
        "position": position,
        "eta_seconds": eta,
        "unavailable_until": queue.unavailable_until,
        "no_workers": queue.no_workers,
    }
    with translation.override(language):
        html = get_template(PLACE_TEMPLATE).render(context)
    with _place_cache_lock:
        if len(_place_cache) >= _PLACE_CACHE_LIMIT:
            _place_cache.clear()
        _place_cache[key] = html
    return html
