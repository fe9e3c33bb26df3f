"""Open conversation sockets, across every web process: the per-user limit,
and the logout that closes a session's sockets."""

import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from imagejobs.limits import lock_user
from mami.push import group_send

from .models import OpenSocket

SESSION_ENDED_EVENT = "session.ended"


def _fresh_since() -> datetime:
    return timezone.now() - timedelta(seconds=settings.MAMI_SOCKET_STALE_SECONDS)


@transaction.atomic
def register_socket(
    user: User, conversation_id: uuid.UUID, channel_name: str, language: str
) -> bool:
    """Record an opening socket; False if the user already holds the most
    sockets allowed (MAMI_MAX_SOCKETS_PER_USER). The user's row is locked
    so two tabs opening at once are counted one after the other."""
    lock_user(user.pk)
    limit = settings.MAMI_MAX_SOCKETS_PER_USER
    open_now = OpenSocket.objects.filter(user_id=user.pk, seen_at__gte=_fresh_since())
    if limit and open_now.count() >= limit:
        return False
    now = timezone.now()
    # A channel name is new with every socket.
    OpenSocket.objects.create(
        channel_name=channel_name,
        user_id=user.pk,
        conversation_id=conversation_id,
        language=language,
        opened_at=now,
        seen_at=now,
    )
    return True


def forget_stale_sockets() -> int:
    """Rows of sockets whose web process died (not refreshed for
    MAMI_SOCKET_STALE_SECONDS): they no longer count, and the workers'
    sweeps remove them."""
    deleted, _by_model = OpenSocket.objects.filter(seen_at__lt=_fresh_since()).delete()
    return deleted


def refresh_socket(channel_name: str) -> None:
    OpenSocket.objects.filter(pk=channel_name).update(seen_at=timezone.now())


def forget_socket(channel_name: str) -> None:
    OpenSocket.objects.filter(pk=channel_name).delete()


def watched_conversations(
    among: Iterable[uuid.UUID] | None = None,
) -> dict[uuid.UUID, set[str]]:
    """Conversations (of `among`, if given) someone has open now, with the
    languages of their pages: the audience of a queue move or a card (see
    imagejobs.broadcast)."""
    watched: dict[uuid.UUID, set[str]] = {}
    open_now = OpenSocket.objects.filter(seen_at__gte=_fresh_since())
    if among is not None:
        open_now = open_now.filter(conversation_id__in=among)
    for conversation_id, language in open_now.values_list("conversation_id", "language"):
        watched.setdefault(conversation_id, set()).add(language)
    return watched


def session_group(session_key: str) -> str:
    """The channel-layer group of one login session's sockets (the key is
    hashed: group names travel through Redis)."""
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def end_session_sockets(session_key: str) -> None:
    """Close every socket of a session that just logged out, in whichever
    process holds it."""
    group_send(session_group(session_key), {"type": SESSION_ENDED_EVENT})
