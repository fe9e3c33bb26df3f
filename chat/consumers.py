"""The live side of a conversation page: job cards pushed as HTML."""

import asyncio
import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from contextlib import suppress
from http.cookies import SimpleCookie
from typing import Any, cast
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.utils import translation

from imagejobs.broadcast import CardPayload, CardsEvent, PlacesEvent, conversation_cards
from imagejobs.metrics import fragments_sent, open_websockets
from mami.push import asked_key, conversation_group, in_language

from . import places_relay
from .history import message_written
from .presence import forget_socket, refresh_socket, session_group
from .reply_cards import ReplyEvent, ReplyPayload, reply_cards
from .socket_opening import admit, catch_up

logger = logging.getLogger(__name__)

# Application close codes (4xxx): htmx's ws extension never reconnects on
# them, whereas a refused handshake (seen as 1006) is retried forever.
# static/js/mami.js tells the user what each one means.
CLOSE_FORBIDDEN = 4403
CLOSE_LOGGED_OUT = 4401
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_NO_SUCH_PATH = 4404
# A message the protocol doesn't allow (binary, or too big to be a sync
# request): a policy violation. Not 1008 itself: Daphne (autobahn) lets an
# application close only with 1000 or 3000-4999, and turns any other code
# into an error, a 1011 and a traceback.
CLOSE_POLICY = 4008
# Most cards a client may ask to be re-sent in one sync request, and the
# largest message it may send (200 ids as JSON fit well inside).
SYNC_LIMIT = 200
MESSAGE_LIMIT = 16 * 1024


def language_from_scope(scope: Mapping[str, Any]) -> str:
    """The page's language, chosen the way LocaleMiddleware chooses it."""
    request = HttpRequest()
    headers = dict(scope.get("headers") or [])
    cookie = SimpleCookie()
    cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
    request.COOKIES = {key: morsel.value for key, morsel in cookie.items()}
    request.META["HTTP_ACCEPT_LANGUAGE"] = headers.get(b"accept-language", b"").decode("latin-1")
    return translation.get_language_from_request(request)


def _query_value(scope: Mapping[str, Any], name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None


def _page_request(text: str) -> dict[str, Any]:
    try:
        request = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return request if isinstance(request, dict) else {}


def window_request(text: str) -> uuid.UUID | None:
    """The oldest message a page now shows (`{"from": id}`), after it
    loaded older ones; None for anything else."""
    try:
        return uuid.UUID(_page_request(text).get("from"))
    except (ValueError, TypeError, AttributeError):
        return None


def sync_request(text: str, key: str = "sync") -> list[uuid.UUID]:
    """The job ids a page asks to be re-sent (`{"sync": [ids]}`; the ids
    of replies under "replies"); an empty list for anything else, however
    malformed or deeply nested."""
    request = _page_request(text)
    if not isinstance(request.get(key), list):
        return []
    ids = []
    for value in request[key][:SYNC_LIMIT]:
        try:
            ids.append(uuid.UUID(value))
        except (ValueError, TypeError, AttributeError):
            continue
    return ids


class ConversationConsumer(AsyncWebsocketConsumer):
    """Pushes one conversation's job cards and replies. It writes its own
    presence row, and on connect fails the conversation's replies whose
    writer died (so the page shows their Retry); nothing else.

    On connect it sends every unfinished card, so whatever happened while
    the socket was away is repaired from the database.
    """

    groups_joined: tuple[str, ...] = ()
    # `at` of the newest queue.places event sent: an older one is dropped.
    places_at = 0.0
    # The page shows the messages written since this (`asked_key`), or all
    # of them (None): cards of older ones are not sent.
    window_from: float | None = None
    counted = False
    registered = False
    relayed = False
    refresher: asyncio.Task | None = None

    # Channels tidies the database connections of its sync thread before
    # every handler, one hop to that thread each. These handlers only
    # forward what the channel layer brought and never touch the database;
    # a burst of cards reaching a thousand pages made a thousand such hops,
    # one after another. (Queue moves come through `places_relay`, which
    # calls `queue_places` directly.)
    PUSH_ONLY = frozenset({"job.cards", "reply.update", "session.ended"})

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] in self.PUSH_ONLY:
            await getattr(self, get_handler_name(message))(message)
            return
        await super().dispatch(message)

    async def connect(self) -> None:
        # AuthMiddlewareStack's lazy user: a User once authenticated.
        user = cast(User, self.scope.get("user"))
        self.conversation_id: uuid.UUID = self.scope["url_route"]["kwargs"]["conversation_id"]
        self.language = language_from_scope(self.scope)
        admission = await database_sync_to_async(admit)(
            user,
            self.conversation_id,
            self.channel_name,
            self.language,
            _query_value(self.scope, "from"),
        )
        if not admission.allowed:
            await self._refuse(CLOSE_FORBIDDEN)
            return
        self.registered = admission.registered
        if not self.registered:
            await self._refuse(CLOSE_TOO_MANY_SOCKETS)
            return
        if admission.since is not None:
            self.window_from = asked_key(admission.since)
        # Newest (version, progress) sent per card: nothing older goes out.
        self.sent: dict[str, tuple[int, int]] = {}
        groups = [conversation_group(self.conversation_id)]
        session = self.scope.get("session")
        if session is not None and session.session_key:
            groups.append(session_group(session.session_key))
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined = tuple(groups)
        places_relay.join(self.conversation_id.hex, self)
        self.relayed = True
        await self.accept()
        open_websockets.inc()
        self.counted = True
        self.refresher = asyncio.create_task(self._stay_registered())
        caught_up = await database_sync_to_async(catch_up)(self.conversation_id, admission.since)
        await self.send_cards(caught_up.cards)
        await self.send_replies(caught_up.replies)

    async def _window_start(self, message_id: uuid.UUID) -> None:
        """The page now shows messages from `message_id` on, if it is one
        of this conversation's."""
        written = await database_sync_to_async(message_written)(self.conversation_id, message_id)
        if written is not None:
            self.window_from = asked_key(written)

    async def _refuse(self, code: int) -> None:
        # Accept first: a close before accept is a failed handshake, which
        # the page would retry forever.
        await self.accept()
        await self.close(code=code)

    async def _stay_registered(self) -> None:
        while True:
            await asyncio.sleep(settings.MAMI_SOCKET_REFRESH_SECONDS)
            await database_sync_to_async(refresh_socket)(self.channel_name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """However the socket ends (a close, the channel layer failing under
        it, a bug, the task cancelled), its slot is given back and its
        refresher stops: a refresher outliving its socket would keep the
        slot fresh, and the user locked out, for good."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._release()
            except Exception:
                logger.exception("socket %s: giving back its slot failed", self.channel_name)

    async def disconnect(self, code: int) -> None:
        await self._release()

    async def _release(self) -> None:
        """What a socket holds, given back; each part once. The slot first:
        the channel layer may be what failed (Redis away), and the layer
        drops a group membership by itself in time. Should the database be
        away too, the refresher has stopped, so the row goes stale and
        stops counting after MAMI_SOCKET_STALE_SECONDS."""
        if self.refresher is not None:
            self.refresher.cancel()
            with suppress(asyncio.CancelledError):
                await self.refresher
        if self.counted:
            self.counted = False
            open_websockets.dec()
        if self.relayed:
            self.relayed = False
            places_relay.leave(self.conversation_id.hex, self)
        if self.registered:
            self.registered = False
            await database_sync_to_async(forget_socket)(self.channel_name)
        groups, self.groups_joined = self.groups_joined, ()
        for group in groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception as exc:
                logger.info("socket %s: leaving %s failed: %r", self.channel_name, group, exc)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page asks for the current state of cards it shows as
        unfinished (after a reconnect, some may have finished meanwhile).
        Anything else is ignored; a message too big for that is closed."""
        if not self.groups_joined:
            return
        if bytes_data is not None or (text_data and len(text_data) > MESSAGE_LIMIT):
            what = "a binary" if bytes_data is not None else "an oversized"
            logger.warning(
                "socket of conversation %s sent %s message (%d bytes): closed with %d",
                self.conversation_id,
                what,
                len(bytes_data if bytes_data is not None else text_data or ""),
                CLOSE_POLICY,
            )
            await self.close(code=CLOSE_POLICY)
            return
        oldest = window_request(text_data or "")
        if oldest is not None:
            # The page loaded older messages: their cards are live too.
            if self.window_from is not None:
                self.window_from = None
                await self._window_start(oldest)
            return
        job_ids = sync_request(text_data or "")
        if job_ids:
            cards = await database_sync_to_async(conversation_cards)(
                self.conversation_id, job_ids=job_ids
            )
            await self.send_cards(cards)
        reply_ids = sync_request(text_data or "", key="replies")
        if reply_ids:
            replies = await database_sync_to_async(reply_cards)(
                self.conversation_id, message_ids=reply_ids
            )
            await self.send_replies(replies)

    async def job_cards(self, event: CardsEvent) -> None:
        await self.send_cards(event["cards"])

    async def reply_update(self, event: ReplyEvent) -> None:
        await self.send_replies([event["reply"]])

    async def queue_places(self, event: PlacesEvent) -> None:
        """The queue moved (`places_relay` calls this): the new place of
        each queued card. A card that has left the queue meanwhile has no
        place element, and the page drops the fragment."""
        if event["at"] < self.places_at:
            return
        self.places_at = event["at"]
        html = event["html"]
        fragments = in_language(html, self.language, next(iter(html.values()), []))
        if self.window_from is not None:
            # In queue order, not the page's: check each.
            window = self.window_from
            fragments = [
                f for f, asked in zip(fragments, event["asked"], strict=True) if asked >= window
            ]
        if fragments:
            fragments_sent.inc(len(fragments))
            await self.send(text_data="".join(fragments))

    async def session_ended(self, event: dict[str, str]) -> None:
        """The session logged out: this socket stops at once."""
        await self.close(code=CLOSE_LOGGED_OUT)

    async def send_cards(self, cards: list[CardPayload]) -> None:
        await self._send_newest(
            (card["id"], (card["version"], card["progress"]), card["asked"], card["html"])
            for card in cards
        )

    async def send_replies(self, replies: list[ReplyPayload]) -> None:
        await self._send_newest(
            (reply["id"], (reply["version"], 0), reply["asked"], reply["html"]) for reply in replies
        )

    async def _send_newest(
        self, elements: Iterable[tuple[str, tuple[int, int], float, dict[str, str]]]
    ) -> None:
        """Send each element (id, (version, progress), asked, html) unless
        this socket sent a newer one of it, or its page does not show it."""
        fragments = []
        for element_id, key, asked, html in elements:
            if self.window_from is not None and asked < self.window_from:
                continue
            last = self.sent.get(element_id)
            if last is not None and key < last:
                continue
            self.sent[element_id] = key
            fragments.append(in_language(html, self.language, ""))
        if fragments:
            fragments_sent.inc(len(fragments))
            await self.send(text_data="".join(fragments))


class NoSuchSocket(AsyncWebsocketConsumer):
    """Any other websocket path: refused cleanly, never a server error."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_NO_SUCH_PATH)
