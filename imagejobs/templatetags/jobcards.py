from django import template
from django.utils.safestring import SafeString

from imagejobs.cards import render_card
from imagejobs.errors import user_message
from imagejobs.models import ImageJob
from imagejobs.positions import QueueSnapshot
from imagejobs.timespan import duration

register = template.Library()


@register.simple_tag
def job_card(job: ImageJob, queue: QueueSnapshot) -> SafeString:
    """The job's card, rendered exactly as the socket would send it."""
    return SafeString(render_card(job, queue))


@register.simple_tag
def job_error_message(job: ImageJob) -> str:
    return user_message(job.error_code)


@register.filter(name="duration")
def duration_filter(seconds: float | None) -> str:
    """Rough, human time span: '8 seconds', '3 minutes', '1 h 20 min'."""
    return duration(seconds)
