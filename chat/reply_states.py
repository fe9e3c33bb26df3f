"""Every write of a reply's state, in one place (as `imagejobs.transitions`
is for jobs): each a conditional UPDATE that bumps `version`, so a page
never swaps an older reply over a newer one, and a write that finds the
reply no longer writing changes nothing.

    writing --(done, stopped, failed)--> its end
    writing --(Stop asked)--> writing, with stop_requested_at
"""

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone, translation

from .models import Conversation, Message, Reply
from .reply_errors import ReplyError


def create_reply(
    conversation: Conversation, answering: Message, *, at: datetime, model: str
) -> Message:
    """The assistant message the chat model will write, empty for now."""
    message = Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, text="", created_at=at
    )
    message.reply = Reply.objects.create(
        message=message,
        answering=answering,
        model=model,
        language=translation.get_language() or "",
        saved_at=timezone.now(),
    )
    return message


def request_stop(reply: Reply) -> bool:
    """Ask the writer to stop (it looks every STOP_POLL_SECONDS). A new
    version, so the writer's pushes still on their way (which show Stop)
    cannot replace the "Stopping…" the asker is shown."""
    return bool(
        Reply.objects.filter(
            pk=reply.pk, state=Reply.State.WRITING, stop_requested_at__isnull=True
        ).update(stop_requested_at=timezone.now(), version=F("version") + 1)
    )


def save_text(reply: Reply, text: str, **ending: str) -> bool:
    """Save what the writer has so far, and read back what others wrote
    meanwhile (a Stop asked) into `reply`, so its next push shows it.
    `ending`: the state fields of its last save (`end_reply`). False if
    the reply is no longer writing."""
    now = timezone.now()
    with transaction.atomic():
        saved = Reply.objects.filter(pk=reply.pk, state=Reply.State.WRITING).update(
            version=F("version") + 1, saved_at=now, **ending
        )
        if not saved:
            return False
        Message.objects.filter(pk=reply.pk).update(text=text)
        reply.version, reply.stop_requested_at = (
            Reply.objects.filter(pk=reply.pk).values_list("version", "stop_requested_at").get()
        )
    reply.saved_at = now
    reply.message.text = text
    return True


def end_reply(
    reply: Reply, text: str, state: str, *, code: ReplyError | str = "", detail: str = ""
) -> bool:
    """The writer's last save: the text as it ends and how it ended. False
    (nothing written) if the reply is no longer writing (a sweep failed it
    as orphaned meanwhile)."""
    if not save_text(reply, text, state=state, error_code=code, error_detail=detail):
        return False
    reply.state, reply.error_code, reply.error_detail = state, code, detail
    return True


def keep_waiting(message_ids: list[uuid.UUID]) -> None:
    """Replies waiting for a writer thread of a live process: not orphans.
    Only the heartbeat moves; the page has nothing new to show."""
    Reply.objects.filter(pk__in=message_ids, state=Reply.State.WRITING).update(
        saved_at=timezone.now()
    )


def stop_asked(message_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Those of `message_ids` whose Stop was asked."""
    return list(
        Reply.objects.filter(
            pk__in=message_ids, state=Reply.State.WRITING, stop_requested_at__isnull=False
        ).values_list("pk", flat=True)
    )


def fail_orphans(conversation_id: uuid.UUID | None = None) -> list[uuid.UUID]:
    """Replies whose writer died (its process stopped) stay writing with
    no saves: they fail, with a Retry, instead of a page waiting forever.
    A live writer saves at least every CHAT_REPLY_SAVE_INTERVAL while words
    come, and gives the model CHAT_MODEL_TIMEOUT for the next ones. The
    ids of those failed here."""
    quiet = settings.CHAT_MODEL_TIMEOUT + 2 * settings.CHAT_REPLY_SAVE_INTERVAL + 5
    cutoff = timezone.now() - timedelta(seconds=quiet)
    stale = Reply.objects.filter(state=Reply.State.WRITING, saved_at__lt=cutoff)
    if conversation_id is not None:
        stale = stale.filter(message__conversation_id=conversation_id)
    failed = []
    for message_id in stale.values_list("pk", flat=True):
        changed = Reply.objects.filter(
            pk=message_id, state=Reply.State.WRITING, saved_at__lt=cutoff
        ).update(
            state=Reply.State.FAILED,
            error_code=ReplyError.INTERRUPTED,
            error_detail="no save for too long: its writer stopped",
            version=F("version") + 1,
        )
        if changed:
            failed.append(message_id)
    return failed
