"""The embedded topology's channel layer: Channels' in-memory layer, with
its fan-out made cheap enough for a queue move that reaches every watched
conversation at once.

Channels' layer sweeps every channel and group for expired messages on
each `group_send`, and sends to each member through a task of its own: a
move that reaches 100 conversations cost about 25 ms on the sends alone
(`bench/queue_moves.py`). Here the sweep runs at most once a second
(messages live for `expiry`, 60 s, so a sweep a second late changes
nothing) and a group's members get the message directly, as Redis' layer
does. Each receiver's copy is made by a msgpack round trip instead of
`deepcopy`: the same serialization the Redis layer applies, so an event
that production could not carry fails here too, at a fraction of the cost.
"""

import asyncio
import contextlib
import time

import msgpack
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryLayer

SWEEP_INTERVAL = 1.0


class InMemoryChannelLayer(ChannelsInMemoryLayer):
    _swept_at = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._swept_at < SWEEP_INTERVAL:
            return
        self._swept_at = now
        # Private to the stubs, not to Channels.
        super()._clean_expired()  # type: ignore[misc]

    async def send(self, channel: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        copy = msgpack.unpackb(msgpack.packb(message))
        try:
            queue.put_nowait((time.time() + self.expiry, copy))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            with contextlib.suppress(ChannelFull):
                await self.send(channel, message)
