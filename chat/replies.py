"""A reply from the chat model: started with the user's message, written
off the request by `chat.reply_runner`, pushed to the conversation's pages
as it grows, saved as it grows, stopped, failed readably, retried.

The database holds the reply's text and state: a page opened mid-reply
renders the text so far, then takes the pushes (each carries the whole
text so far and a version, so none can undo a later one). If the chat
model asks to draw, the reply becomes the picture's message, made by the
same rules as `/image`.
"""

import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import openai
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext

from imagejobs.limits import LimitReached, check_picture_allowed
from imagejobs.models import PROMPT_MAX_LENGTH
from imagejobs.transitions import do_enqueue

from . import chat_model
from .models import Conversation, Message, Reply
from .reply_errors import ReplyError

logger = logging.getLogger(__name__)


class ReplyFailed(Exception):
    def __init__(self, code: ReplyError, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class ReplyActionError(ValueError):
    """Stop or Retry asked of a reply that cannot do it now."""


# -- starting --------------------------------------------------------------


def start_reply(conversation: Conversation, answering: Message, *, at: Any) -> Message:
    """The assistant message the chat model will write, empty for now.
    Call inside the transaction that stores `answering`; the writing starts
    once it commits."""
    from . import reply_runner

    message = Message.objects.create(
        conversation=conversation, role=Message.Role.ASSISTANT, text="", created_at=at
    )
    Reply.objects.create(message=message, answering=answering, saved_at=timezone.now())
    transaction.on_commit(lambda: reply_runner.submit(message.id), robust=True)
    return message


def check_stop(user: Any, message_id: Any) -> Reply:
    """Ask the writer to stop; it keeps what was written."""
    with transaction.atomic():
        reply = _owned(user, message_id)
        if not reply.is_writing:
            raise ReplyActionError(gettext("This reply is not being written any more."))
        Reply.objects.filter(pk=reply.pk, state=Reply.State.WRITING).update(
            stop_requested_at=timezone.now()
        )
    return reply


def check_retry(user: Any, message_id: Any) -> Message:
    """A new reply to the same message, after a failure or a stop."""
    with transaction.atomic():
        reply = _owned(user, message_id)
        if reply.state not in (Reply.State.FAILED, Reply.State.STOPPED):
            raise ReplyActionError(gettext("Only a failed or stopped reply can be retried."))
        conversation = reply.message.conversation
        message = start_reply(conversation, reply.answering, at=timezone.now())
        conversation.save(update_fields=["updated_at"])
    return message


def _owned(user: Any, message_id: Any) -> Reply:
    from django.http import Http404

    reply = (
        Reply.objects.select_for_update(of=("self",))
        .select_related("message__conversation", "answering")
        .filter(pk=message_id, message__conversation__owner=user)
        .first()
    )
    if reply is None:
        raise Http404(gettext("There is no such reply."))
    return reply


# -- writing ---------------------------------------------------------------


class Writer:
    """Writes one reply: streams the model's words, pushes and saves them
    at their rates, stops when asked, fails readably."""

    def __init__(self, message_id: Any, *, push: Callable[[Reply], None] | None = None) -> None:
        from .reply_cards import push_reply

        self.reply = Reply.objects.select_related("message__conversation", "answering").get(
            pk=message_id
        )
        self.message = self.reply.message
        self.push = push or push_reply
        self.text = ""
        self._pushed_at = 0.0
        self._saved_at = time.monotonic()
        self._pushed_text: str | None = None

    def run(self) -> None:
        if not self.reply.is_writing:
            return
        try:
            outcome = self._stream()
        except ReplyFailed as failure:
            self._end(Reply.State.FAILED, code=failure.code, detail=failure.detail)
            return
        except Exception as exc:  # a bug must not leave the reply writing forever
            logger.exception("reply %s failed", self.message.id)
            self._end(Reply.State.FAILED, code=ReplyError.UNKNOWN, detail=repr(exc))
            return
        self._end(outcome)

    def _stream(self) -> str:
        calls: dict[int, dict[str, str]] = {}
        finish = None
        try:
            stream = chat_model.client().chat.completions.create(
                model=chat_model.model_name(),
                messages=chat_model.context(self.reply),  # type: ignore[arg-type]
                tools=[chat_model.DRAW_TOOL],  # type: ignore[list-item]
                stream=True,
            )
            with stream:
                for chunk in stream:
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    delta = choice.delta
                    if delta.content:
                        self.text += delta.content
                    for call in delta.tool_calls or []:
                        entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
                        if call.function is not None:
                            entry["name"] += call.function.name or ""
                            entry["arguments"] += call.function.arguments or ""
                    finish = choice.finish_reason or finish
                    if self._stop_requested():
                        return Reply.State.STOPPED
                    self._tick()
        except openai.APITimeoutError as exc:
            raise ReplyFailed(ReplyError.TIMEOUT, repr(exc)) from None
        except openai.APIConnectionError as exc:
            raise ReplyFailed(ReplyError.UNREACHABLE, repr(exc)) from None
        except openai.APIStatusError as exc:
            raise ReplyFailed(
                ReplyError.REFUSED, f"{exc.status_code}: {exc.message}"[:2000]
            ) from None
        except (openai.APIError, ValueError) as exc:
            # A stream line that is not JSON, or not a chunk.
            raise ReplyFailed(ReplyError.BROKEN, repr(exc)[:2000]) from None
        if finish is None:
            raise ReplyFailed(ReplyError.BROKEN, f"stream ended without a finish: {self.text!r}")
        if calls:
            self._draw(calls[min(calls)])
        return Reply.State.DONE

    def _stop_requested(self) -> bool:
        """Asked (from any web process) at most every push interval."""
        now = time.monotonic()
        if now - self._pushed_at < settings.CHAT_REPLY_PUSH_INTERVAL:
            return False
        return Reply.objects.filter(pk=self.reply.pk, stop_requested_at__isnull=False).exists()

    def _tick(self) -> None:
        now = time.monotonic()
        if now - self._pushed_at >= settings.CHAT_REPLY_PUSH_INTERVAL:
            if now - self._saved_at >= settings.CHAT_REPLY_SAVE_INTERVAL:
                self._save()
            self._send()

    def _save(self, **fields: Any) -> None:
        self._saved_at = time.monotonic()
        self.reply.version += 1
        self.reply.saved_at = timezone.now()
        with transaction.atomic():
            Message.objects.filter(pk=self.message.pk).update(text=self.text)
            Reply.objects.filter(pk=self.reply.pk).update(
                version=self.reply.version, saved_at=self.reply.saved_at, **fields
            )
        self.message.text = self.text

    def _send(self) -> None:
        self._pushed_at = time.monotonic()
        if self.text == self._pushed_text and self.reply.is_writing:
            return
        self._pushed_text = self.text
        self.message.text = self.text
        self.push(self.reply)

    def _end(self, state: str, *, code: str = "", detail: str = "") -> None:
        self.reply.state = state
        self.reply.error_code = code
        self._save(state=state, error_code=code, error_detail=detail)
        self._send()

    def _draw(self, call: dict[str, str]) -> None:
        """The model asked for a picture: the same job `/image` makes."""
        if call["name"] != "draw_picture":
            raise ReplyFailed(ReplyError.BAD_TOOL_CALL, f"unknown tool {call['name']!r}")
        parameters = _picture_parameters(call["arguments"])
        from .actions import choose_model, reply_for_image
        from .intents import ImageRequest

        request = ImageRequest(parameters.pop("prompt"))
        conversation = self.message.conversation
        try:
            with transaction.atomic():
                check_picture_allowed(conversation.owner)
                parameters["model"], parameters["model_source"] = choose_model(
                    conversation, request.prompt, None
                )
                do_enqueue(
                    message_id=self.message.id,
                    owner=conversation.owner,
                    prompt=request.prompt,
                    asked_as=self.reply.answering.text,
                    **parameters,
                )
        except LimitReached as exc:
            self.text = (self.text + "\n\n" if self.text else "") + exc.message
            return
        # The message now owns a job; the pushes so far rendered it without
        # one (and Django remembers that), so read it again.
        self.message = Message.objects.select_related("conversation", "image_job").get(
            pk=self.message.pk
        )
        self.reply.message = self.message
        if not self.text.strip():
            self.text = reply_for_image(request)


def _picture_parameters(arguments: str) -> dict[str, Any]:
    """draw_picture's arguments, checked as the API checks a request's."""
    try:
        given = json.loads(arguments or "{}")
    except ValueError:
        raise ReplyFailed(ReplyError.BAD_TOOL_CALL, f"arguments not JSON: {arguments!r}") from None
    if not isinstance(given, dict):
        raise ReplyFailed(ReplyError.BAD_TOOL_CALL, f"arguments not an object: {arguments!r}")
    prompt = given.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > PROMPT_MAX_LENGTH:
        raise ReplyFailed(ReplyError.BAD_TOOL_CALL, f"bad prompt: {arguments!r}")
    parameters: dict[str, Any] = {"prompt": " ".join(prompt.split())}
    negative = given.get("negative_prompt")
    if isinstance(negative, str) and negative.strip():
        parameters["negative_prompt"] = negative.strip()[:PROMPT_MAX_LENGTH]
    for side in ("width", "height"):
        value = given.get(side)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 64 <= value <= 2048:
            raise ReplyFailed(ReplyError.BAD_TOOL_CALL, f"bad {side}: {arguments!r}")
        parameters[side] = value - value % 8
    return parameters


# -- recovery --------------------------------------------------------------


def fail_orphaned_replies() -> int:
    """Replies whose writer died (its process stopped) stay writing with
    no saves: they fail, with a Retry, instead of a page waiting forever.
    A live writer saves at least every CHAT_REPLY_SAVE_INTERVAL while words
    come, and gives the model CHAT_MODEL_TIMEOUT for the next ones."""
    quiet = settings.CHAT_MODEL_TIMEOUT + 2 * settings.CHAT_REPLY_SAVE_INTERVAL + 5
    cutoff = timezone.now() - timedelta(seconds=quiet)
    orphans = list(
        Reply.objects.filter(state=Reply.State.WRITING, saved_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    from .reply_cards import push_reply

    for message_id in orphans:
        changed = Reply.objects.filter(
            pk=message_id, state=Reply.State.WRITING, saved_at__lt=cutoff
        ).update(
            state=Reply.State.FAILED,
            error_code=ReplyError.INTERRUPTED,
            error_detail="no save for too long: its writer stopped",
            version=F("version") + 1,
        )
        if changed:
            push_reply(Reply.objects.select_related("message__conversation").get(pk=message_id))
    return len(orphans)
