"""A reply as the pages see it: its message element, in every language,
pushed to the conversation's sockets as a `reply.update` event (the
consumers keep the newest version per element, as for job cards)."""

import uuid
from typing import Final, Literal, TypedDict

from imagejobs import positions
from mami import push

from .models import Reply

MESSAGE_TEMPLATE = "chat/conversation.html#message"
REPLY_EVENT: Final = "reply.update"


class ReplyPayload(TypedDict):
    """One reply's message element as the sockets get it."""

    # The element's id ("reply-" and its message's id), not a job's.
    id: str
    version: int
    # When its message was written (`push.asked_key`).
    asked: float
    html: dict[str, str]


class ReplyEvent(TypedDict):
    type: Literal["reply.update"]
    reply: ReplyPayload


def reply_payload(reply: Reply) -> ReplyPayload:
    message = reply.message
    job = getattr(message, "image_job", None) if message.pk else None
    snapshot = positions.snapshot(only=[job]) if job is not None else positions.QueueSnapshot()
    return {
        "id": f"reply-{message.pk}",
        "version": reply.version,
        "asked": push.asked_key(message.created_at),
        "html": push.render_in_languages(MESSAGE_TEMPLATE, {"message": message, "queue": snapshot}),
    }


def push_reply(reply: Reply) -> None:
    """Send the reply as it stands to every page of its conversation."""
    message = reply.message
    message.reply = reply
    event: ReplyEvent = {"type": REPLY_EVENT, "reply": reply_payload(reply)}
    push.group_send(push.conversation_group(message.conversation_id), event)


def reply_cards(
    conversation_id: uuid.UUID, *, message_ids: list[uuid.UUID] | None = None
) -> list[ReplyPayload]:
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
