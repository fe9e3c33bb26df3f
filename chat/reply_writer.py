"""Writes a reply from the chat model: streams its words, pushes and
saves them at their rates, stops when asked, fails readably, and turns a
request to draw into the same job `/image` makes (`pictures.queue_picture`).
Runs on `chat.reply_runner`'s threads; every state it writes goes through
`chat.reply_states`.

The database holds the reply's text and state: a page opened mid-reply
renders the text so far, then takes the pushes (each carries the whole
text so far and a version, so none can undo a later one).
"""

import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

import httpx
import openai
from django.conf import settings
from django.db import connection
from django.utils import translation
from openai.types.chat import ChatCompletionChunk

from imagejobs.bounds import PROMPT_MAX_LENGTH, SIDE_MAX, SIDE_MIN, SIDE_MULTIPLE
from imagejobs.limits import LimitReached
from mami.db_outage import OUTAGE_ERRORS, database, drop_connection, outage_guard

from . import chat_model, reply_states
from .intents import ImageRequest
from .models import Message, Reply
from .pictures import queue_picture, reply_for_image
from .reply_cards import push_reply
from .reply_errors import ReplyError
from .storable_text import storable

logger = logging.getLogger(__name__)

# How often a writer looks whether its reply was asked to stop.
STOP_POLL_SECONDS = 0.2


class ReplyFailed(Exception):
    def __init__(self, code: ReplyError, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class Writer:
    """Writes one reply: streams the model's words, pushes and saves them
    at their rates, stops when asked, fails readably."""

    def __init__(
        self, message_id: uuid.UUID, *, push: Callable[[Reply], None] | None = None
    ) -> None:
        self.reply = Reply.objects.select_related("message__conversation", "answering").get(
            pk=message_id
        )
        self.message = self.reply.message
        self.push = push or push_reply
        self.text = ""
        # Pushes and saves come from the reading thread (as words arrive)
        # and from the flusher (what arrived just before the model paused).
        self._lock = threading.Lock()
        self._pushed_at = 0.0
        self._pushed_text: str | None = None
        self._saved_at = time.monotonic()
        self._saved_text = ""

    def run(self) -> None:
        if not self.reply.is_writing:
            return
        if self.reply.stop_requested_at is not None:
            # Stopped while it waited for its turn: the model is not asked.
            self._end(Reply.State.STOPPED)
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
        stopped = threading.Event()
        streaming = threading.Event()
        try:
            # stream=True: a stream of chunks (the overloads lose it to the ignores).
            stream = cast(
                "openai.Stream[ChatCompletionChunk]",
                chat_model.client().chat.completions.create(
                    model=chat_model.model_name(),
                    messages=chat_model.context(self.reply),  # type: ignore[arg-type]
                    tools=[chat_model.DRAW_TOOL],  # type: ignore[list-item]
                    stream=True,
                ),
            )
            streaming.set()
            flusher = threading.Thread(
                target=self._flusher, args=(stream, stopped, streaming), daemon=True
            )
            flusher.start()
            with stream:
                for chunk in stream:
                    if stopped.is_set():
                        return Reply.State.STOPPED
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    delta = choice.delta
                    if delta.content:
                        # A model's NUL would make every save fail on PostgreSQL.
                        self.text += storable(delta.content)
                    for call in delta.tool_calls or []:
                        entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
                        if call.function is not None:
                            entry["name"] += call.function.name or ""
                            entry["arguments"] += call.function.arguments or ""
                    finish = choice.finish_reason or finish
                    self._flush()
        except Exception as exc:
            if stopped.is_set():
                return Reply.State.STOPPED  # the stream was closed under us: Stop
            raise _failure(exc) from None
        finally:
            if streaming.is_set():
                streaming.clear()
                flusher.join()
        if stopped.is_set():
            return Reply.State.STOPPED
        if finish is None:
            raise ReplyFailed(ReplyError.BROKEN, f"stream ended without a finish: {self.text!r}")
        if calls:
            with translation.override(self.reply.language or None):
                self._draw(calls[min(calls)])
        return Reply.State.DONE

    def _flusher(self, stream: Any, stopped: threading.Event, streaming: threading.Event) -> None:
        """While the model streams: push and save what arrived just before
        it paused (the reading thread only does so as words come), and end
        the reply at once when Stop is asked from any web process, even if
        the model sends nothing (the stream is closed under the reader)."""
        interval = settings.CHAT_REPLY_PUSH_INTERVAL
        next_look = time.monotonic() + STOP_POLL_SECONDS
        try:
            while streaming.is_set():
                time.sleep(interval)
                self._flush()
                if time.monotonic() < next_look:
                    continue
                next_look = time.monotonic() + STOP_POLL_SECONDS
                asked = False
                with outage_guard(f"reply {self.reply.pk}"):
                    asked = Reply.objects.filter(
                        pk=self.reply.pk, stop_requested_at__isnull=False
                    ).exists()
                if asked and streaming.is_set():
                    stopped.set()
                    _abort(stream)
                    return
        except Exception:
            logger.exception("reply %s: flushing or watching for Stop failed", self.reply.pk)
        finally:
            connection.close()

    def _flush(self) -> None:
        """Save the text if it changed and the save interval has passed;
        push it if it changed and the push interval has."""
        with self._lock:
            now = time.monotonic()
            text = self.text
            if text != self._saved_text and now - self._saved_at >= (
                settings.CHAT_REPLY_SAVE_INTERVAL
            ):
                self._save()
            if text != self._pushed_text and now - self._pushed_at >= (
                settings.CHAT_REPLY_PUSH_INTERVAL
            ):
                self._send()

    def _save(self) -> None:
        self._saved_at = time.monotonic()
        with outage_guard(f"reply {self.reply.pk}"):
            # The database away: the words stay here and the next save
            # (or the last) writes them all.
            reply_states.save_text(self.reply, self.text)
            self._saved_text = self.text

    def _send(self) -> None:
        self._pushed_at = time.monotonic()
        self._pushed_text = self.message.text = self.text
        self.push(self.reply)

    def _end(self, state: str, *, code: ReplyError | str = "", detail: str = "") -> None:
        """The last save, tried again while the database is away, for as
        long as a silent model would be waited for; past that the orphan
        sweep fails the reply with a Retry."""
        deadline = time.monotonic() + settings.CHAT_MODEL_TIMEOUT
        while True:
            try:
                with self._lock:
                    if reply_states.end_reply(
                        self.reply, self.text, state, code=code, detail=detail
                    ):
                        self._send()
                return
            except OUTAGE_ERRORS as exc:
                drop_connection()
                database.failed(f"reply {self.reply.pk}", exc)
                if time.monotonic() > deadline:
                    return
                time.sleep(database.backoff())

    def _draw(self, call: dict[str, str]) -> None:
        """The model asked for a picture: the same job `/image` makes."""
        if call["name"] != "draw_picture":
            raise ReplyFailed(ReplyError.BAD_TOOL_CALL, f"unknown tool {call['name']!r}")
        parameters = _picture_parameters(call["arguments"])
        request = ImageRequest(parameters.pop("prompt"))
        try:
            # The model the user picked when asking ("": Automatic, the rules).
            queue_picture(
                self.message,
                request,
                parameters,
                asked_model=self.reply.model,
                asked_as=self.reply.answering.text,
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


def _abort(stream: Any) -> None:
    """End a stream another thread is reading: closing the response alone
    leaves that thread blocked in its read until the model sends more,
    so the socket is shut down under it."""
    network = stream.response.extensions.get("network_stream")
    sock = network.get_extra_info("socket") if network is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    stream.close()


def _failure(exc: Exception) -> ReplyFailed:
    """What a failure of the model's server or stream means for the reply."""
    if isinstance(exc, ReplyFailed):
        return exc
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
        return ReplyFailed(ReplyError.TIMEOUT, repr(exc))
    if isinstance(exc, openai.APIConnectionError):
        return ReplyFailed(ReplyError.UNREACHABLE, repr(exc))
    if isinstance(exc, openai.APIStatusError):
        return ReplyFailed(ReplyError.REFUSED, f"{exc.status_code}: {exc.message}"[:2000])
    if isinstance(exc, (openai.APIError, httpx.HTTPError, ValueError)):
        # A stream line that is not JSON or not a chunk; a dropped stream.
        return ReplyFailed(ReplyError.BROKEN, repr(exc)[:2000])
    raise exc


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
    parameters: dict[str, Any] = {"prompt": " ".join(storable(prompt).split())}
    negative = given.get("negative_prompt")
    if isinstance(negative, str) and negative.strip():
        parameters["negative_prompt"] = storable(negative).strip()[:PROMPT_MAX_LENGTH]
    for side in ("width", "height"):
        value = given.get(side)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise ReplyFailed(ReplyError.BAD_TOOL_CALL, f"bad {side}: {arguments!r}")
        if not SIDE_MIN <= value <= SIDE_MAX:
            raise ReplyFailed(ReplyError.BAD_TOOL_CALL, f"bad {side}: {arguments!r}")
        # The API refuses a side that is not a multiple; a model's is rounded.
        parameters[side] = value - value % SIDE_MULTIPLE
    return parameters


# -- recovery --------------------------------------------------------------


def fail_orphaned_replies(conversation_id: uuid.UUID | None = None) -> int:
    """Fail the replies whose writer died (`reply_states.fail_orphans`) and
    show their pages the Retry. Run by the workers' sweeps (and cron) for
    all conversations, by each reply runner now and then, and for one
    conversation when a page of it (re)connects."""
    failed = reply_states.fail_orphans(conversation_id)
    for message_id in failed:
        push_reply(Reply.objects.select_related("message__conversation").get(pk=message_id))
    return len(failed)
