"""What a user does in a conversation: post a message (a picture request
makes a queued job, `pictures.queue_picture`; with a chat model, the model
replies); Stop or Retry a reply; Retry, Regenerate, Same seed or
Variations of a picture (new assistant messages, each with its own job);
rename or delete the conversation. Job actions that need no new message
live in `imagejobs.actions`."""

import uuid
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.text import Truncator
from django.utils.translation import gettext

from imagejobs.access import access_job
from imagejobs.actions import JobActionError
from imagejobs.limits import MAX_VARIATIONS, check_picture_allowed
from imagejobs.models import ImageJob
from imagejobs.transitions import do_cancel_queued, do_enqueue

from . import chat_model, reply_runner, reply_states
from .access import access_reply
from .intents import ImageRequest
from .models import Conversation, Message
from .pictures import picker_choice, queue_picture, reply_for_chat, reply_for_image
from .reply_limits import check_reply_allowed

TITLE_LENGTH = 60


def start_conversation(owner: User) -> Conversation:
    return Conversation.objects.create(owner=owner)


# No savepoint when nested (the API and the first message wrap it): an
# exception ends the whole transaction anyway, and the savepoints were a
# sixth of a submission's statements.
@transaction.atomic(savepoint=False)
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

    Raises LimitReached, and nothing is written, if the owner may not ask
    for another picture (or another reply of the chat model) now.

    With a chat model, a message is the model's to answer unless it is an
    explicit `/image` (a request the rules only guessed is the model's too:
    it writes the prompt in English, whatever language the user wrote in).
    """
    if image_request is not None and image_request.guessed and chat_model.configured():
        image_request = None
    parameters = dict(parameters or {})
    # None: not said (no picker); "": Automatic; else the model picked.
    asked_model = parameters.pop("model", None)
    now = timezone.now()
    user_message = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, text=text, created_at=now
    )
    # One microsecond later, so the pair always sorts question-then-answer.
    answer_at = now + timedelta(microseconds=1)
    if image_request is None and chat_model.configured():
        # The chat model answers (and may decide to draw), off the request;
        # a picture it draws is for the model picked now.
        if asked_model is None:
            asked_model = picker_choice(conversation)
        answer = start_reply(conversation, user_message, at=answer_at, model=asked_model)
    else:
        answer = Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            text=reply_for_chat() if image_request is None else reply_for_image(image_request),
            created_at=answer_at,
        )
        if image_request is not None:
            queue_picture(answer, image_request, parameters, asked_model=asked_model)
    fields = ["updated_at"]
    if not conversation.title:
        # "/image a lighthouse" is titled "a lighthouse".
        said = image_request.prompt if image_request is not None else text
        conversation.title = Truncator(" ".join(said.split())).chars(TITLE_LENGTH)
        fields.append("title")
    conversation.save(update_fields=fields)
    return [user_message, answer]


def check_retry(user: User, job_id: uuid.UUID, *, as_staff: bool = False) -> Message:
    """The same request again (same seed) after a failure or a cancel.
    `as_staff`: staff acting on anyone's job from the admin."""
    return _again(user, job_id, Again.RETRY, as_staff=as_staff)[0]


def check_regenerate(user: User, job_id: uuid.UUID, *, as_staff: bool = False) -> Message:
    """Another take on a finished picture: same prompt, new seed."""
    return _again(user, job_id, Again.REGENERATE, as_staff=as_staff)[0]


def check_same_seed(user: User, job_id: uuid.UUID) -> Message:
    """A finished picture queued again with the seed it was drawn with
    fixed (to change one parameter and keep the composition)."""
    return _again(user, job_id, Again.SAME_SEED)[0]


def check_variations(user: User, job_id: uuid.UUID, count: int) -> list[Message]:
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
    user: User,
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


class ReplyActionError(ValueError):
    """Stop or Retry asked of a reply that cannot do it now."""


def start_reply(
    conversation: Conversation, answering: Message, *, at: datetime, model: str
) -> Message:
    """The assistant message the chat model will write, empty for now;
    `model`: the checkpoint the user picked ("": Automatic), for a picture
    it may draw. Call inside the transaction that stores `answering`; the
    writing starts once it commits. LimitReached if the owner may not ask
    for another reply now (`reply_limits`)."""
    check_reply_allowed(conversation.owner_id)
    message = reply_states.create_reply(conversation, answering, at=at, model=model)
    owner_id = conversation.owner_id
    transaction.on_commit(lambda: reply_runner.submit(message.id, owner_id), robust=True)
    return message


def check_stop_reply(user: User, message_id: uuid.UUID) -> Message:
    """Ask the writer to stop; it keeps what was written. The message as
    it is now, showing "Stopping…"."""
    with transaction.atomic():
        reply = access_reply(user, message_id, lock=True)
        if not reply.is_writing:
            raise ReplyActionError(gettext("This reply is not being written any more."))
        if reply.can_stop:  # else asked already (a double click): the same answer
            reply_states.request_stop(reply)
    reply.refresh_from_db()
    reply.message.refresh_from_db(fields=["text"])
    return reply.message


@transaction.atomic
def check_retry_reply(user: User, message_id: uuid.UUID) -> Message:
    """A new reply to the same message, after a failure or a stop."""
    reply = access_reply(user, message_id, lock=True)
    if not reply.can_retry:
        raise ReplyActionError(gettext("Only a failed or stopped reply can be retried."))
    conversation = reply.message.conversation
    message = start_reply(conversation, reply.answering, at=timezone.now(), model=reply.model)
    conversation.save(update_fields=["updated_at"])
    return message


class TitleError(ValueError):
    pass


def rename_conversation(conversation: Conversation, title: str) -> None:
    """Give the conversation the title its owner chose (one line, not
    empty, at most the field's length)."""
    title = " ".join(title.split())
    most = Conversation.TITLE_MAX_LENGTH
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

    def delete_files() -> None:
        for name in files:
            default_storage.delete(name)

    transaction.on_commit(delete_files)
