"""Rendering of job cards: the same template for the page and the socket."""

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation

from .models import ImageJob, Status
from .queue import QueueSnapshot

CARD_TEMPLATE = "imagejobs/card.html"


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
