"""A picture asked for in a conversation: which model draws it, what the
assistant says about it, and the one way it is queued for a message,
whoever asks (the composer, the API, the chat model's tool call)."""

from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.text import Truncator
from django.utils.translation import gettext

from imagejobs import checkpoints, model_routes
from imagejobs.limits import check_picture_allowed
from imagejobs.models import ImageJob, ModelSource
from imagejobs.transitions import do_enqueue

from .intents import ImageRequest
from .models import Conversation, Message


def reply_for_chat() -> str:
    return gettext(
        "I can draw pictures for you. Start a message with /image, for example "
        "“/image a red fox in the snow”, or just ask: “draw a cat”."
    )


def reply_for_image(request: ImageRequest) -> str:
    return gettext("Drawing “%(prompt)s”.") % {"prompt": Truncator(request.prompt).chars(80)}


def picker_choice(conversation: Conversation, entries: checkpoints.Offered | None = None) -> str:
    """What the composer's model picker shows chosen: the model of the
    conversation's last picture if its owner chose it (and a live worker
    still offers it); "" (automatic) otherwise."""
    last = (
        ImageJob.objects.filter(message__conversation=conversation)
        .order_by("-created_at")
        .values_list("model", "model_source")
        .first()
    )
    if last is None or last[1] != ModelSource.CHOSEN or not last[0]:
        return ""
    return checkpoints.resolve(last[0], entries) or ""


def choose_model(
    conversation: Conversation,
    prompt: str,
    asked: str | None,
    entries: checkpoints.Offered | None = None,
) -> tuple[str, str]:
    """The checkpoint a picture is drawn with, and how it was decided
    (`ModelSource`):

    1. `asked` (already checked): the user's choice;
    2. `asked` None (nothing said, e.g. the API without a model): the
       conversation's last choice, as the picker shows it;
    3. "" (automatic), or nothing from 2: the first routing rule that
       matches the prompt, then MAMI_DEFAULT_MODEL, each among the models a
       live worker offers;
    4. else none: the worker's Forge draws with what it has loaded.
    """
    if asked:
        return asked, ModelSource.CHOSEN
    # `entries` None: each step reads the live workers' models only if it
    # needs them (most requests need none).
    if asked is None:
        last = picker_choice(conversation, entries)
        if last:
            return last, ModelSource.CHOSEN
    routed = model_routes.route(prompt, entries)
    if routed:
        return routed, ModelSource.RULE
    default = settings.MAMI_DEFAULT_MODEL
    found = checkpoints.resolve(default, entries) if default else None
    if found:
        return found, ModelSource.DEFAULT
    return "", ""


@transaction.atomic(savepoint=False)
def queue_picture(
    message: Message,
    request: ImageRequest,
    parameters: dict[str, Any],
    *,
    asked_model: str | None,
    asked_as: str = "",
) -> ImageJob:
    """Queue the picture `message` (the assistant's answer) stands for:
    the one way a picture is asked for in a conversation, whoever asks (the
    composer, the API, the chat model's tool call). `parameters` are
    checked already; `asked_model` as `choose_model` takes it; `asked_as`:
    the user's own words when the chat model wrote the prompt.

    Raises LimitReached if the owner may not ask for another picture now;
    the caller's transaction then writes nothing.
    """
    conversation = message.conversation
    check_picture_allowed(conversation.owner)
    model, source = choose_model(conversation, request.prompt, asked_model)
    job = do_enqueue(
        message_id=message.id,
        owner=conversation.owner,
        prompt=request.prompt,
        asked_as=asked_as,
        model=model,
        model_source=source,
        **parameters,
    )
    # Linked both ways, so `message.image_job` needs no query.
    job.message = message
    return job
