"""Fair use of the shared chat model: how many replies one user may have
being written at once, and how many they may ask for per minute. As for
pictures (`imagejobs.limits`), a refusal is a LimitReached: the composer
shows it and keeps what was typed; nothing is written."""

import math
from datetime import timedelta

from django.conf import settings
from django.db.models import Min
from django.utils import timezone
from django.utils.translation import gettext

from imagejobs.limits import LimitReached, lock_user
from imagejobs.timespan import duration

from .models import Reply

RATE_WINDOW = timedelta(minutes=1)


def check_reply_allowed(owner_id: int) -> None:
    """Raise LimitReached if the user `owner_id` may not ask the chat model for another
    reply now. Locks the user's row first, so two messages of one user at
    the same moment are counted one after the other (call inside the
    transaction that creates the reply)."""
    lock_user(owner_id)
    mine = Reply.objects.filter(message__conversation__owner_id=owner_id)
    cap = settings.MAMI_MAX_REPLIES_IN_FLIGHT
    if cap and mine.filter(state=Reply.State.WRITING).count() >= cap:
        raise LimitReached(
            "too_many_replies",
            gettext(
                "The chat model is still writing %(count)d replies for you, the most one "
                "person may have at once. Send this when one is finished."
            )
            % {"count": cap},
            # A reply takes seconds; a short wait is worth another try.
            5,
        )
    limit = settings.MAMI_MAX_REPLIES_PER_MINUTE
    if not limit:
        return
    now = timezone.now()
    recent = mine.filter(message__created_at__gt=now - RATE_WINDOW)
    if recent.count() >= limit:
        oldest = recent.aggregate(oldest=Min("message__created_at"))["oldest"] or now
        seconds = max(math.ceil((oldest + RATE_WINDOW - now).total_seconds()), 1)
        raise LimitReached(
            "replies_rate_limited",
            gettext(
                "You sent the chat model %(count)d messages within a minute, the most "
                "anyone may. Try again in %(wait)s."
            )
            % {"count": limit, "wait": duration(seconds)},
            seconds,
        )
