"""What a conversation socket reads when it opens, in as few trips to the
database thread as its guarantees allow: a reconnect storm after a restart
is a thousand of these at once."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth.models import User

from imagejobs.broadcast import CardPayload, conversation_cards

from .access import user_owns_conversation
from .history import message_written
from .presence import register_socket
from .reply_cards import ReplyPayload, reply_cards
from .reply_writer import fail_orphaned_replies


@dataclass(frozen=True)
class Admission:
    allowed: bool
    # False: the user holds the most sockets allowed already.
    registered: bool = False
    # When the page's oldest message was written, if it named one of this
    # conversation's: the page shows the messages from there on.
    since: datetime | None = None


def admit(
    user: User,
    conversation_id: uuid.UUID,
    channel_name: str,
    language: str,
    page_from: str | None,
) -> Admission:
    """Whether the socket may open, and its slot taken if so."""
    if not (user and user.is_authenticated and user_owns_conversation(user, conversation_id)):
        return Admission(allowed=False)
    since = message_written(conversation_id, page_from) if page_from is not None else None
    registered = register_socket(user, conversation_id, channel_name, language)
    return Admission(allowed=True, registered=registered, since=since)


@dataclass(frozen=True)
class CatchUp:
    cards: list[CardPayload] = field(default_factory=list)
    replies: list[ReplyPayload] = field(default_factory=list)


def catch_up(conversation_id: uuid.UUID, since: datetime | None) -> CatchUp:
    """Everything unfinished the page must be brought up to date on. Read
    after the socket joined its groups, so no change falls between the two;
    replies whose writer died are failed first, so the page shows Retry."""
    cards = conversation_cards(conversation_id, since=since)
    replies = reply_cards(conversation_id)
    # Only a reply still being written can have lost its writer (most
    # pages have none: one read, not two).
    if replies and fail_orphaned_replies(conversation_id):
        replies = reply_cards(conversation_id)
    return CatchUp(cards=cards, replies=replies)
