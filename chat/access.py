"""Who may see which conversation and which reply."""

import uuid

from django.contrib.auth.models import User
from django.http import Http404
from django.utils.translation import gettext

from .models import Conversation, Reply


def access_conversation(
    user: User, conversation_id: uuid.UUID, *, lock: bool = False
) -> Conversation:
    """The user's own conversation, or 404 (never 403: ids of others stay
    secret). `lock` holds the row until the caller's transaction ends."""
    conversations = Conversation.objects.filter(pk=conversation_id, owner_id=user.pk)
    if lock:
        conversations = conversations.select_for_update()
    conversation = conversations.first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def user_owns_conversation(user: User, conversation_id: uuid.UUID) -> bool:
    try:
        access_conversation(user, conversation_id)
    except Http404:
        return False
    return True


def access_reply(user: User, message_id: uuid.UUID, *, lock: bool = False) -> Reply:
    """A reply in the user's own conversation, or 404. `lock` holds its
    row until the caller's transaction ends."""
    replies = Reply.objects.select_related("message__conversation", "answering").filter(
        pk=message_id, message__conversation__owner_id=user.pk
    )
    if lock:
        replies = replies.select_for_update(of=("self",))
    reply = replies.first()
    if reply is None:
        raise Http404(gettext("There is no such reply."))
    return reply
