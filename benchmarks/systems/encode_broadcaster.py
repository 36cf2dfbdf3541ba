"""encode-broadcaster: encode/broadcaster 0.3.1 on its Redis pub/sub backend.

It runs in ``benchmarks/.venv-peers`` with redis-py 5.3.1: with redis-py 6 and
newer its subscribers wait forever and nothing is delivered.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

from broadcaster import Broadcast

from ..scenarios import Receiver
from .base import REDIS_URL, Adapter


class EncodeBroadcaster(Adapter):
    def __init__(self) -> None:
        self.broadcast = Broadcast(REDIS_URL)

    async def start(self) -> None:
        await self.broadcast.connect()

    async def publish(self, channel: str, payload: str) -> None:
        await self.broadcast.publish(channel, payload)

    def subscribe(self, channel: str) -> Any:
        # Subscribers are entered one at a time by the drivers: two concurrent
        # first subscribe() calls on one channel lose a subscriber in 0.3.1.
        return self.broadcast.subscribe(channel)

    def receiver(self, handle: Any) -> Receiver:
        return handle.get, attrgetter("message")

    async def close(self) -> None:
        await self.broadcast.disconnect()
