from django import template
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext

from imagejobs.cards import render_card
from imagejobs.errors import user_message
from imagejobs.models import ImageJob
from imagejobs.queue import QueueSnapshot

register = template.Library()


@register.simple_tag
def job_card(job: ImageJob, queue: QueueSnapshot) -> SafeString:
    """The job's card, rendered exactly as the socket would send it."""
    return SafeString(render_card(job, queue))


@register.simple_tag
def job_error_message(job: ImageJob) -> str:
    return user_message(job.error_code)


@register.filter
def duration(seconds: float | None) -> str:
    """Rough, human time span: '8 seconds', '3 minutes', '1 h 20 min'."""
    if seconds is None:
        return ""
    seconds = max(round(seconds), 1)
    if seconds < 60:
        return ngettext("%(n)d second", "%(n)d seconds", seconds) % {"n": seconds}
    minutes = round(seconds / 60)
    if minutes < 60:
        return ngettext("%(n)d minute", "%(n)d minutes", minutes) % {"n": minutes}
    hours, minutes = divmod(minutes, 60)
    return gettext("%(h)d h %(m)d min") % {"h": hours, "m": minutes}
