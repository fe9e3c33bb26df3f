"""Fair use of a shared GPU: how many pictures one user may have waiting or
drawing at once, and how many they may ask for per minute."""

import math
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Count, Min
from django.utils import timezone
from django.utils.translation import gettext

from .models import UNFINISHED_STATUSES, ImageJob
from .positions import average_job_seconds
from .timespan import duration

RATE_WINDOW = timedelta(minutes=1)


class LimitReached(Exception):
    """The user may not ask for another picture now. `code` says which
    limit, `retry_after` in how many seconds it is worth trying again."""

    def __init__(self, code: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = max(1, retry_after)


# Variations of one picture asked for at once, at most.
MAX_VARIATIONS = 4


def lock_user(user_id: int) -> None:
    """Hold the user's row until the transaction ends, so two requests of
    one user are counted one after the other. On SQLite no statement is
    needed: mami's transactions there take the write lock at BEGIN
    (IMMEDIATE), which already puts them one after the other."""
    if connection.features.has_select_for_update:
        get_user_model().objects.select_for_update().filter(pk=user_id).exists()


def check_picture_allowed(user: User, count: int = 1) -> None:
    """Raise LimitReached if `user` may not queue `count` more pictures now
    (all of them, or none: variations are asked for together).

    Locks the user's row first, so two requests of one user at the same
    moment are counted one after the other (call inside the transaction
    that creates the job).
    """
    lock_user(user.pk)
    now = timezone.now()
    limit = settings.MAMI_MAX_PICTURES_PER_MINUTE
    recent: dict[str, Any] = (
        ImageJob.objects.filter(owner_id=user.pk, created_at__gt=now - RATE_WINDOW).aggregate(
            count=Count("id"), oldest=Min("created_at")
        )
        if limit
        else {"count": 0}
    )
    if limit and recent["count"] + count > limit:
        # With none in the window (all `count` at once are too many), the
        # window empties a minute after they would have been asked.
        free_at = (recent["oldest"] or now) + RATE_WINDOW
        seconds = max(math.ceil((free_at - now).total_seconds()), 1)
        values = {"count": limit, "wait": duration(seconds)}
        if recent["count"] >= limit:
            text = gettext(
                "You asked for %(count)d pictures within a minute, the most anyone may. "
                "Try again in %(wait)s."
            )
        else:
            text = gettext(
                "That would make more than %(count)d pictures within a minute, the most "
                "anyone may. Ask for fewer, or try again in %(wait)s."
            )
        raise LimitReached("rate_limited", text % values, seconds)
    cap = settings.MAMI_MAX_UNFINISHED_PER_USER
    if cap and not getattr(user, "is_staff", False):
        unfinished = ImageJob.objects.filter(
            owner_id=user.pk, status__in=UNFINISHED_STATUSES
        ).count()
        if unfinished + count > cap:
            seconds = math.ceil(average_job_seconds())
            values = {"count": cap, "wait": duration(seconds)}
            if unfinished >= cap:
                text = gettext(
                    "You already have %(count)d pictures waiting or being drawn, the most "
                    "one person may have at once. Try again when one is finished (in about "
                    "%(wait)s)."
                )
            else:
                text = gettext(
                    "That would make more than %(count)d pictures waiting or being drawn, "
                    "the most one person may have at once. Ask for fewer, or try again when "
                    "one is finished (in about %(wait)s)."
                )
            raise LimitReached("too_many_unfinished", text % values, seconds)
