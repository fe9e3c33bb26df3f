"""The live side of a conversation page: job cards pushed as HTML."""

import json
import uuid
from http.cookies import SimpleCookie
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import HttpRequest
from django.utils import translation

from imagejobs.broadcast import CardPayload, CardsEvent, conversation_cards, conversation_group
from imagejobs.metrics import fragments_sent, open_websockets

from .access import user_owns_conversation

# Accept-then-close with a 4xxx code: htmx's ws extension doesn't reconnect
# on it, whereas a refused handshake (seen as 1006) is retried forever.
CLOSE_FORBIDDEN = 4403
# Most cards a client may ask to be re-sent in one sync request.
SYNC_LIMIT = 200


def language_from_scope(scope: dict[str, Any]) -> str:
    """The page's language, chosen the way LocaleMiddleware chooses it."""
    request = HttpRequest()
    headers = dict(scope.get("headers") or [])
    cookie = SimpleCookie()
    cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
    request.COOKIES = {key: morsel.value for key, morsel in cookie.items()}
    request.META["HTTP_ACCEPT_LANGUAGE"] = headers.get(b"accept-language", b"").decode("latin-1")
    return translation.get_language_from_request(request)


class ConversationConsumer(AsyncWebsocketConsumer):
    """Pushes one conversation's job cards; never writes anything.

    On connect it sends every unfinished card, so whatever happened while
    the socket was away is repaired from the database.
    """

    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.conversation_id: uuid.UUID = self.scope["url_route"]["kwargs"]["conversation_id"]
        allowed = bool(user and user.is_authenticated) and await database_sync_to_async(
            user_owns_conversation
        )(user, self.conversation_id)
        if not allowed:
            await self.accept()
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.language = language_from_scope(self.scope)
        # Newest (version, progress) sent per card: nothing older goes out.
        self.sent: dict[str, tuple[int, int]] = {}
        self.group = conversation_group(self.conversation_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        open_websockets.inc()
        cards = await database_sync_to_async(conversation_cards)(self.conversation_id)
        await self.send_cards(cards)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            open_websockets.dec()
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page asks for the current state of cards it shows as
        unfinished (after a reconnect, some may have finished meanwhile)."""
        if self.group is None or not text_data:
            return
        try:
            request = json.loads(text_data)
            job_ids = [uuid.UUID(str(value)) for value in request.get("sync", [])[:SYNC_LIMIT]]
        except (ValueError, TypeError, AttributeError):
            return
        if job_ids:
            cards = await database_sync_to_async(conversation_cards)(
                self.conversation_id, job_ids=job_ids
            )
            await self.send_cards(cards)

    async def job_cards(self, event: CardsEvent) -> None:
        await self.send_cards(event["cards"])

    async def send_cards(self, cards: list[CardPayload]) -> None:
        fragments = []
        for card in cards:
            key = (card["version"], card["progress"])
            last = self.sent.get(card["id"])
            if last is not None and key < last:
                continue
            self.sent[card["id"]] = key
            html = card["html"]
            fragments.append(html.get(self.language) or html[settings.LANGUAGE_CODE])
        if fragments:
            fragments_sent.inc(len(fragments))
            await self.send(text_data="".join(fragments))
