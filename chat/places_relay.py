"""A queue move reaches each web process as one channel-layer event
(`queue.moved`, to `broadcast.PLACES_GROUP`) carrying every watched
conversation's new places; one relay per process (per event loop) hands
each of its open sockets its own conversation's part.

One group send per conversation cost the sender about a millisecond of
CPU each with Redis' layer, so a move reaching 1,000 pages took seconds
before the first page heard of it; now the sender makes one send and each
process receives one message.
"""

import asyncio
import logging
import weakref
from typing import Any, Protocol, cast

from channels.layers import get_channel_layer

from imagejobs.broadcast import PLACES_GROUP, MovedEvent, PlacesEvent

logger = logging.getLogger(__name__)

# Channel-layer group memberships expire (a day by default): renewed hourly.
RENEW_SECONDS = 3600.0
# After the layer failed (Redis restarting), listen again this much later.
RETRY_SECONDS = 1.0


class Socket(Protocol):
    async def queue_places(self, event: PlacesEvent) -> None: ...


class _Relay:
    def __init__(self) -> None:
        self.sockets: dict[str, set[Socket]] = {}
        self.task: asyncio.Task[None] | None = None


_relays: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Relay]" = (
    weakref.WeakKeyDictionary()
)


def join(conversation_hex: str, socket: Socket) -> None:
    """`socket` (on the running loop) gets its conversation's places."""
    loop = asyncio.get_running_loop()
    relay = _relays.get(loop)
    if relay is None:
        relay = _relays[loop] = _Relay()
    relay.sockets.setdefault(conversation_hex, set()).add(socket)
    if relay.task is None or relay.task.done():
        relay.task = loop.create_task(_listen(relay), name="mami-places-relay")


def leave(conversation_hex: str, socket: Socket) -> None:
    relay = _relays.get(asyncio.get_running_loop())
    if relay is None:
        return
    sockets = relay.sockets.get(conversation_hex)
    if sockets is not None:
        sockets.discard(socket)
        if not sockets:
            del relay.sockets[conversation_hex]


async def _listen(relay: _Relay) -> None:
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is always configured"
    while True:
        renewer = None
        try:
            channel = await layer.new_channel()
            await layer.group_add(PLACES_GROUP, channel)
            renewer = asyncio.create_task(_renew(layer, channel))
            while True:
                await _hand_out(relay, cast(MovedEvent, await layer.receive(channel)))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("the places relay lost the channel layer; listening again")
            await asyncio.sleep(RETRY_SECONDS)
        finally:
            if renewer is not None:
                renewer.cancel()


async def _renew(layer: Any, channel: str) -> None:
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        await layer.group_add(PLACES_GROUP, channel)


async def _hand_out(relay: _Relay, message: MovedEvent) -> None:
    for conversation_hex, event in message["places"].items():
        for socket in list(relay.sockets.get(conversation_hex, ())):
            try:
                await socket.queue_places(event)
            except Exception:
                logger.exception("sending places to a socket failed")
