"""What a user does in a conversation: post a message (a picture request
makes a queued job); Retry, Regenerate, Same seed or Variations of a
picture (new assistant messages, each with its own job); rename or delete
the conversation. Job actions that need no new message live in
`imagejobs.actions`."""

import uuid
from datetime import timedelta
from enum import Enum
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.text import Truncator
from django.utils.translation import gettext

from imagejobs import checkpoints, model_routes
from imagejobs.access import access_job
from imagejobs.actions import JobActionError
from imagejobs.limits import MAX_VARIATIONS, check_picture_allowed
from imagejobs.models import ImageJob, ModelSource
from imagejobs.transitions import do_cancel_queued, do_enqueue

from . import chat_model, replies
from .intents import ImageRequest
from .models import Conversation, Message

TITLE_LENGTH = 60


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


def start_conversation(owner: AbstractBaseUser) -> Conversation:
    return Conversation.objects.create(owner=owner)


@transaction.atomic
def post_message(
    conversation: Conversation,
    text: str,
    image_request: ImageRequest | None,
    parameters: dict[str, Any] | None = None,
) -> list[Message]:
    """Store the user's message and the assistant's answer; for a picture
    request the answer owns a queued job. All in one transaction, so the
    page never shows a request without its card or a card without its
    request.

    Raises LimitReached, before writing anything, if the owner may not ask
    for another picture now.

    With a chat model, a message is the model's to answer unless it is an
    explicit `/image` (a request the rules only guessed is the model's too:
    it writes the prompt in English, whatever language the user wrote in).
    """
    if image_request is not None and image_request.guessed and chat_model.configured():
        image_request = None
    if image_request is not None:
        check_picture_allowed(conversation.owner)
        parameters = dict(parameters or {})
        parameters["model"], parameters["model_source"] = choose_model(
            conversation, image_request.prompt, parameters.get("model")
        )
    now = timezone.now()
    user_message = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, text=text, created_at=now
    )
    # One microsecond later, so the pair always sorts question-then-answer.
    answer_at = now + timedelta(microseconds=1)
    if image_request is None and chat_model.configured():
        # The chat model answers (and may decide to draw), off the request.
        picked = (parameters or {}).get("model") or ""
        answer = replies.start_reply(conversation, user_message, at=answer_at, model=picked)
    elif image_request is None:
        answer = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            text=reply_for_chat(),
            created_at=answer_at,
        )
    else:
        answer = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            text=reply_for_image(image_request),
            created_at=answer_at,
        )
        job = do_enqueue(
            message_id=answer.id,
            owner=conversation.owner,
            prompt=image_request.prompt,
            **(parameters or {}),
        )
        # Linked both ways, so `answer.image_job` needs no query.
        job.message = answer
    fields = ["updated_at"]
    if not conversation.title:
        # "/image a lighthouse" is titled "a lighthouse".
        said = image_request.prompt if image_request is not None else text
        conversation.title = Truncator(" ".join(said.split())).chars(TITLE_LENGTH)
        fields.append("title")
    conversation.save(update_fields=fields)
    return [user_message, answer]


def check_retry(user: AbstractBaseUser, job_id: uuid.UUID, *, as_staff: bool = False) -> Message:
    """The same request again (same seed) after a failure or a cancel.
    `as_staff`: staff acting on anyone's job from the admin."""
    return _again(user, job_id, Again.RETRY, as_staff=as_staff)[0]


def check_regenerate(
    user: AbstractBaseUser, job_id: uuid.UUID, *, as_staff: bool = False
) -> Message:
    """Another take on a finished picture: same prompt, new seed."""
    return _again(user, job_id, Again.REGENERATE, as_staff=as_staff)[0]


def check_same_seed(user: AbstractBaseUser, job_id: uuid.UUID) -> Message:
    """A finished picture queued again with the seed it was drawn with
    fixed (to change one parameter and keep the composition)."""
    return _again(user, job_id, Again.SAME_SEED)[0]


def check_variations(user: AbstractBaseUser, job_id: uuid.UUID, count: int) -> list[Message]:
    """`count` (1..MAX_VARIATIONS) new seeds for a finished picture's
    request, each its own job and card; all are counted against the
    user's limits before any is queued."""
    if not 1 <= count <= MAX_VARIATIONS:
        raise JobActionError(
            gettext("Ask for 1 to %(most)d variations.") % {"most": MAX_VARIATIONS}
        )
    return _again(user, job_id, Again.VARIATIONS, count=count)


class Again(Enum):
    RETRY = "retry"
    REGENERATE = "regenerate"
    SAME_SEED = "same_seed"
    VARIATIONS = "variations"


@transaction.atomic
def _again(
    user: AbstractBaseUser,
    job_id: uuid.UUID,
    kind: Again,
    *,
    count: int = 1,
    as_staff: bool = False,
) -> list[Message]:
    """New assistant messages, each with its own job at the back of the
    queue, linked to the old job (`retry_of`). The same limits as new
    requests apply to whoever asks (LimitReached)."""
    job = access_job(user, job_id, lock=True, as_staff=as_staff)
    if kind is Again.RETRY:
        if not job.can_retry:
            raise JobActionError(gettext("Only a failed or canceled picture can be retried."))
    elif not job.can_regenerate:
        raise JobActionError(gettext("Only a finished picture can be regenerated."))
    check_picture_allowed(user, count)
    conversation = Conversation.objects.select_for_update().get(pk=job.message.conversation_id)
    parameters = job.generation_parameters()
    prompt = Truncator(job.prompt).chars(80)
    if kind is Again.RETRY:
        texts = [gettext("Trying “%(prompt)s” again.") % {"prompt": prompt}]
    elif kind is Again.REGENERATE:
        parameters["seed"] = -1
        texts = [gettext("Another take on “%(prompt)s”.") % {"prompt": prompt}]
    elif kind is Again.SAME_SEED:
        parameters["seed"] = job.result_seed if job.result_seed is not None else job.seed
        texts = [
            gettext("“%(prompt)s” again with seed %(seed)s.")
            % {"prompt": prompt, "seed": parameters["seed"]}
        ]
    else:
        parameters["seed"] = -1
        texts = [
            gettext("Variation %(n)d of %(count)d on “%(prompt)s”.")
            % {"n": n, "count": count, "prompt": prompt}
            for n in range(1, count + 1)
        ]
    now = timezone.now()
    answers = []
    for n, text in enumerate(texts):
        answer = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            text=text,
            # Apart by a microsecond each: the cards keep their order.
            created_at=now + timedelta(microseconds=n),
        )
        do_enqueue(
            message_id=answer.id,
            owner=job.owner,
            prompt=job.prompt,
            retry_of=job,
            model=job.model,
            model_source=job.model_source,
            **parameters,
        )
        answers.append(answer)
    conversation.save(update_fields=["updated_at"])
    return answers


class TitleError(ValueError):
    pass


def rename_conversation(conversation: Conversation, title: str) -> None:
    """Give the conversation the title its owner chose (one line, not
    empty, at most the field's length)."""
    title = " ".join(title.split())
    most = Conversation._meta.get_field("title").max_length
    if not title:
        raise TitleError(gettext("Write a title for the conversation."))
    if len(title) > most:
        raise TitleError(
            gettext("A title can be at most %(max)d characters (it has %(length)d).")
            % {"max": most, "length": len(title)}
        )
    conversation.title = title
    conversation.save(update_fields=["title"])


@transaction.atomic
def delete_conversation(conversation: Conversation) -> None:
    """Remove a conversation with its messages and pictures. Waiting
    pictures are canceled first (the queue moves for everyone else); one
    being drawn is interrupted by its worker, which finds it gone. The
    picture files go once the deletion is committed."""
    jobs = ImageJob.objects.filter(message__conversation=conversation)
    do_cancel_queued(jobs, reason="canceled (conversation deleted)")
    files = [name for name in jobs.exclude(image="").values_list("image", flat=True) if name]
    conversation.delete()
    transaction.on_commit(lambda: [default_storage.delete(name) for name in files])
