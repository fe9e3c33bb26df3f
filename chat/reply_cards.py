"""A reply as the pages see it: its message element, in every language,
pushed to the conversation's sockets the way job cards are (the consumers
keep the newest version per element)."""

import uuid

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation

from imagejobs import queue
from imagejobs.broadcast import CardPayload, asked_key, conversation_group, group_send_many

from .models import Reply

MESSAGE_TEMPLATE = "chat/conversation.html#message"


def reply_payload(reply: Reply) -> CardPayload:
    message = reply.message
    job = getattr(message, "image_job", None) if message.pk else None
    snapshot = queue.snapshot(only=[job]) if job is not None else queue.QueueSnapshot()
    context = {"message": message, "queue": snapshot}
    html = {}
    for code, _name in settings.LANGUAGES:
        with translation.override(code):
            html[code] = render_to_string(MESSAGE_TEMPLATE, context)
    return {
        # Not a job's id: the consumers keep one newest version per id.
        "id": f"reply-{message.pk}",
        "version": reply.version,
        "progress": 0,
        "asked": asked_key(message.created_at),
        "html": html,
    }


def push_reply(reply: Reply) -> None:
    """Send the reply as it stands to every page of its conversation."""
    message = reply.message
    message.reply = reply
    group_send_many(
        [
            (
                conversation_group(message.conversation_id),
                {"type": "job.cards", "cards": [reply_payload(reply)]},
            )
        ]
    )


def reply_cards(
    conversation_id: uuid.UUID, *, message_ids: list[uuid.UUID] | None = None
) -> list[CardPayload]:
    """The replies a (re)connecting page needs: those being written, or the
    ones it asks about (shown unfinished when its socket dropped)."""
    replies = Reply.objects.filter(message__conversation_id=conversation_id).select_related(
        "message", "message__image_job"
    )
    if message_ids is None:
        replies = replies.filter(state=Reply.State.WRITING)
    else:
        replies = replies.filter(pk__in=message_ids)
    payloads = []
    for reply in replies:
        reply.message.reply = reply
        payloads.append(reply_payload(reply))
    return payloads
