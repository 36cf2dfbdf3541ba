"""raw-redis-py: a bare ``redis.asyncio`` pub/sub loop, the ceiling for a Python client.

One client publishes (its pool opens a connection per concurrent publish), one
PubSub connection reads with ``listen()`` and hands each payload to local queues.

It speaks RESP2: redis-py 8 defaults to RESP3, where every pub/sub message goes
through a default push handler that builds ``str(message)`` for a debug log
line whether or not debug logging is on; that halves the reader's speed on
64 KB payloads. RESP2 (or a ``push_handler_func``) avoids it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis import asyncio as redis

from ..scenarios import Receiver
from .base import REDIS_URL, Adapter, LocalFanout


class RawRedis(Adapter):
    def __init__(self) -> None:
        # Room for the 100 publisher tasks of concurrent-publish plus the reader.
        self.client = redis.Redis.from_url(REDIS_URL, max_connections=1_000, protocol=2)
        self.pubsub = self.client.pubsub()
        self.local = LocalFanout(self._listen, self.pubsub.unsubscribe)
        self.reader: asyncio.Task[None] | None = None

    async def _listen(self, key: bytes) -> None:
        await self.pubsub.subscribe(key)
        if self.reader is None or self.reader.done():
            # listen() returns as soon as nothing is subscribed, so start it after.
            self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] == "message":
                self.local.dispatch(message["channel"], message["data"])

    async def publish(self, channel: str, payload: str) -> None:
        await self.client.publish(channel, payload)

    def subscribe(self, channel: str) -> Any:
        return self.local.subscription(channel.encode())

    def receiver(self, handle: asyncio.Queue[bytes]) -> Receiver:
        return handle.get, None

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        await self.pubsub.aclose()
        await self.client.aclose()
