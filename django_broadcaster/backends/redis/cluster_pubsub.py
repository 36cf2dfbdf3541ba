"""`RedisClusterBackend`: `RedisBackend` on a Redis Cluster, on sharded pub/sub.

Chosen by ``OPTIONS["CLUSTER"]`` on ``RedisBackend``. An event goes out with
``SPUBLISH`` on the master serving its channel's slot and travels only inside
that shard, where a classic ``PUBLISH`` is copied to every node of the cluster.

The process keeps one ``SSUBSCRIBE`` connection per master serving a subscribed
channel (not one per channel), each read by a task of its own that fills one
inbox. ``SSUBSCRIBE`` takes the channels of one slot at a time. When a slot
moves (resharding), Redis ends its channels' subscriptions with a
``SUNSUBSCRIBE`` nobody asked for; a stale slot map gets ``MOVED``. Both, like
a node's connection failing, are reported as a lost connection: the hub
reconnects, which reads the slot map again and subscribes every channel anew.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

from ..base import BackendConfig, RawEvent
from .cluster import Address, ClusterConnections, redirection, slot_of
from .connection import ConnectionClosed, RedisConnections
from .pubsub import RedisBackend
from .wire import key_error


class _ShardLink:
    """One node's sharded pub/sub connection, and the replies still due on it."""

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.failed: BaseException | None = None
        # Per command sent, in order: [replies still due, future or None, names left].
        self.due: deque[list[Any]] = deque()
        self.leaving: Counter[bytes] = Counter()  # our SUNSUBSCRIBEs not yet confirmed
        self.send_lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None

    async def send(
        self, command: str, names: list[bytes], future: asyncio.Future[None] | None
    ) -> None:
        async with self.send_lock:
            if self.failed is not None:
                raise ConnectionClosed(str(self.failed))
            leaving = names if command == "SUNSUBSCRIBE" else []
            self.leaving.update(leaving)
            self.due.append([len(names), future, leaving])
            await self.connection.send_command(command, *names)

    def replied(self, error: BaseException | None) -> None:
        """Count one reply (or an error reply) to the oldest command due."""
        if not self.due:
            return
        entry = self.due[0]
        entry[0] -= 1
        if entry[0] <= 0 or error is not None:
            self.due.popleft()
            if error is not None:
                self.leaving.subtract(entry[2])
            future = entry[1]
            if future is not None and not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def left(self, name: bytes) -> bool:
        """Whether a ``sunsubscribe`` for ``name`` answers one of our SUNSUBSCRIBEs."""
        if self.leaving[name] <= 0:
            return False
        self.leaving[name] -= 1
        self.replied(None)
        return True

    def fail(self, exc: BaseException) -> None:
        if self.failed is None:
            self.failed = exc
        due, self.due = self.due, deque()
        for _, future, _ in due:
            if future is not None and not future.done():
                future.set_exception(ConnectionClosed(str(exc)))


class RedisClusterBackend(RedisBackend):
    """`RedisBackend` on Redis Cluster: ``SPUBLISH``, and one ``SSUBSCRIBE``
    connection per master in use."""

    cluster_of = RedisBackend

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._links: dict[Address, _ShardLink] = {}
        self._links_lock = asyncio.Lock()
        self._subscribed: dict[bytes, tuple[str, Address]] = {}  # wire name -> channel, node
        self._received: deque[RawEvent] = deque()
        self._ready = asyncio.Event()
        self._failure: BaseException | None = None

    def new_connections(self, owner: str, kwargs: Mapping[str, Any]) -> RedisConnections:
        return ClusterConnections(owner, self.location, kwargs)

    @property
    def cluster(self) -> ClusterConnections:
        """`connections`, as the cluster connections they are."""
        assert isinstance(self.connections, ClusterConnections)
        return self.connections

    async def connect(self) -> None:
        self._failure = None
        await self.connections.connect()

    async def close(self) -> None:
        links, self._links = self._links, {}
        self._subscribed.clear()
        self._received.clear()
        closed = ConnectionClosed(f"{self.alias!r} was closed")
        self._failure = closed
        self._ready.set()
        for link in links.values():
            link.fail(closed)
            if link.task is not None:
                link.task.cancel()
        await self.connections.close(*(link.connection for link in links.values()))

    def wake_commands(self, queue: str, wake: bytes, ttl_ms: int) -> list[tuple[Any, ...]]:
        return [("SPUBLISH", self.wire_name(queue), wake)]

    async def publish_many(
        self, events: Sequence[tuple[str, bytes]]
    ) -> list[str | Exception | None]:
        names = [self.wire_name(channel) for channel, _ in events]
        replies = await self.connections.execute(
            *[("SPUBLISH", name, payload) for name, (_, payload) in zip(names, events, strict=True)]
        )
        return [
            key_error("publish on", channel, name, reply) if isinstance(reply, Exception) else None
            for (channel, _), name, reply in zip(events, names, replies, strict=True)
        ]

    async def subscribe(self, positions: Mapping[str, str | None]) -> Mapping[str, str]:
        groups: dict[Address, dict[int, list[bytes]]] = {}
        for channel in positions:
            name = self.wire_name(channel).encode()
            address = self.cluster.owner_of(name)
            self._subscribed[name] = (channel, address)
            groups.setdefault(address, {}).setdefault(slot_of(name), []).append(name)
        futures: list[asyncio.Future[None]] = []
        for address, slots in groups.items():
            link = await self._shard_link(address)
            for names in slots.values():
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                futures.append(future)
                await link.send("SSUBSCRIBE", names, future)
        for future in futures:
            try:
                await future
            except ResponseError as exc:
                if redirection(exc) is not None or str(exc).startswith("CLUSTERDOWN"):
                    # A stale slot map: the hub's reconnect reads it again.
                    raise ConnectionClosed(f"{self.alias!r}: SSUBSCRIBE answered {exc}") from None
                raise
        return {}  # no history, so no baselines

    async def unsubscribe(self, channels: Collection[str]) -> None:
        groups: dict[Address, dict[int, list[bytes]]] = {}
        for channel in channels:
            name = self.wire_name(channel).encode()
            entry = self._subscribed.pop(name, None)
            if entry is not None:
                groups.setdefault(entry[1], {}).setdefault(slot_of(name), []).append(name)
        for address, slots in groups.items():
            link = self._links.get(address)
            if link is not None and link.failed is None:
                for names in slots.values():
                    # Not awaited: messages still in flight are dropped by name.
                    await link.send("SUNSUBSCRIBE", names, None)

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

    async def _shard_link(self, address: Address) -> _ShardLink:
        """The sharded pub/sub connection to ``address``, opened at its first channel."""
        async with self._links_lock:
            link = self._links.get(address)
            if link is not None:
                return link
            node = await self.cluster.node(address)
            link = self._links[address] = _ShardLink(await node.open_dedicated())
            link.task = asyncio.get_running_loop().create_task(self._read_shard(link))
            return link

    async def _read_shard(self, link: _ShardLink) -> None:
        """Read ``link`` until it fails; a failure ends `receive` with it."""
        try:
            while True:
                try:
                    reply = await link.connection.read_response(disconnect_on_error=False)
                except ResponseError as exc:
                    link.replied(exc)  # an error reply to SSUBSCRIBE (an ACL, MOVED)
                    continue
                if not isinstance(reply, list) or not reply:
                    continue
                kind = reply[0]
                if kind == b"smessage":
                    entry = self._subscribed.get(reply[1])
                    if entry is not None:
                        self._received.append(RawEvent(entry[0], reply[2], None))
                        self._ready.set()
                elif kind == b"ssubscribe":
                    link.replied(None)
                elif kind == b"sunsubscribe" and not link.left(reply[1]):
                    entry = self._subscribed.get(reply[1])
                    if entry is not None:
                        raise ConnectionClosed(
                            f"{self.alias!r}: Redis ended the subscription of channel "
                            f"{entry[0]!r} (its slot moved to another node)"
                        )
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            link.fail(exc)
            if self._failure is None:
                self._failure = exc
            self._ready.set()
