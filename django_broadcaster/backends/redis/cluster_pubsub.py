"""`RedisClusterBackend`: `RedisBackend` on a Redis Cluster, on sharded pub/sub.

Chosen by ``OPTIONS["CLUSTER"]`` on ``RedisBackend``. An event goes out with
``SPUBLISH`` on the master serving its channel's slot and travels only inside
that shard, where a classic ``PUBLISH`` is copied to every node of the cluster.
Subscriptions are ``SSUBSCRIBE`` on one connection per master in use (see
``shards``), whose messages fill one inbox for `receive`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection, Mapping, Sequence

from ..base import BackendConfig, RawEvent
from .cluster import OnCluster
from .connection import ConnectionClosed
from .pubsub import RedisBackend
from .shards import ShardSubscriptions


class RedisClusterBackend(OnCluster, RedisBackend):
    """`RedisBackend` on Redis Cluster: ``SPUBLISH``, and one ``SSUBSCRIBE``
    connection per master in use."""

    cluster_of = RedisBackend
    publish_command = "SPUBLISH"  # the message stays inside the shard of its slot

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        owner = f"{type(self).__name__} {self.alias!r}"
        self._shards = ShardSubscriptions(
            self.cluster, owner, self._message, self._fail, self.options["LIVENESS_INTERVAL"]
        )
        self._subscribed: dict[bytes, str] = {}  # wire names -> channel names
        self._received: deque[RawEvent] = deque()
        self._ready = asyncio.Event()
        self._failure: BaseException | None = None

    async def connect(self) -> None:
        self._failure = None
        await self.connections.connect()

    async def close(self) -> None:
        self._subscribed.clear()
        self._received.clear()
        closed = ConnectionClosed(f"{self.alias!r} was closed")
        self._fail(closed)
        await self.connections.close(*self._shards.close(closed))

    def _message(self, name: bytes, payload: bytes) -> None:
        channel = self._subscribed.get(name)
        if channel is not None:
            self._received.append(RawEvent(channel, payload, None))
            self._ready.set()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._ready.set()

    async def subscribe(self, positions: Mapping[str, str | None]) -> Mapping[str, str]:
        names = {self.wire_name(channel).encode(): channel for channel in positions}
        self._subscribed.update(names)
        await self._shards.subscribe(names)
        return {}  # no history, so no baselines

    async def unsubscribe(self, channels: Collection[str]) -> None:
        names = [self.wire_name(channel).encode() for channel in channels]
        for name in names:
            self._subscribed.pop(name, None)
        await self._shards.unsubscribe(names)

    async def receive(self) -> Sequence[RawEvent]:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._received:
                events = list(self._received)
                self._received.clear()
                return events
            self._ready.clear()
            await self._ready.wait()
