"""Who may see which conversation."""

import uuid

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import Http404

from .models import Conversation


def access_conversation(
    user: AbstractBaseUser, conversation_id: uuid.UUID, *, lock: bool = False
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


def user_owns_conversation(user: AbstractBaseUser, conversation_id: uuid.UUID) -> bool:
    return Conversation.objects.filter(pk=conversation_id, owner_id=user.pk).exists()
