"""A conversation's messages a window at a time: a page shows the latest
ones and loads older ones on demand, so its cost does not grow with the
conversation's length (the (conversation, created_at) index serves each
window in one query)."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from .models import Conversation, Message

# Messages a page shows at first, and adds per "load older".
WINDOW = 50


@dataclass(frozen=True)
class Window:
    messages: list[Message]
    # More messages are older than the first one here.
    has_older: bool


def _window(messages, limit: int) -> Window:  # type: ignore[no-untyped-def]
    newest_first = list(
        messages.select_related("image_job", "reply").order_by("-created_at", "-id")[: limit + 1]
    )
    return Window(messages=newest_first[:limit][::-1], has_older=len(newest_first) > limit)


def latest_messages(conversation: Conversation, limit: int = WINDOW) -> Window:
    return _window(conversation.messages.all(), limit)


# A link to a message further back than this shows the latest window.
MOST_SHOWN = 1000


def messages_since(conversation: Conversation, message_id: str) -> Window:
    """From the conversation's message `message_id` to the latest (a link
    from the gallery lands on its picture), when that is at most
    MOST_SHOWN messages; else the latest window."""
    written = message_written(conversation.id, message_id)
    if written is None:
        return latest_messages(conversation)
    since = conversation.messages.filter(created_at__gte=written)
    count = since.count()
    if count <= WINDOW or count > MOST_SHOWN:
        return latest_messages(conversation)
    has_older = conversation.messages.filter(created_at__lt=written).exists()
    return Window(messages=_window(since, count).messages, has_older=has_older)


def messages_before(conversation: Conversation, message: Message, limit: int = WINDOW) -> Window:
    """The `limit` messages just before `message` (one of the conversation's)."""
    earlier = conversation.messages.filter(created_at__lte=message.created_at).exclude(
        created_at=message.created_at, id__gte=message.id
    )
    return _window(earlier, limit)


def message_written(conversation_id: uuid.UUID, message_id: str | uuid.UUID) -> datetime | None:
    """When the conversation's message `message_id` was written; None if it
    has no such message (or the id is not one)."""
    try:
        message_id = uuid.UUID(str(message_id))
    except ValueError:
        return None
    return (
        Message.objects.filter(pk=message_id, conversation_id=conversation_id)
        .values_list("created_at", flat=True)
        .first()
    )
