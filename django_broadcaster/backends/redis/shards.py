"""Sharded pub/sub subscriptions on a Redis Cluster, for both cluster backends.

`ShardSubscriptions` keeps one ``SSUBSCRIBE`` connection per master serving a
subscribed channel (not one per channel), each read by a task of its own that
hands every message to a callback. ``SSUBSCRIBE`` takes the channels of one
slot at a time. When a slot moves (resharding), Redis ends its channels'
subscriptions with a ``SUNSUBSCRIBE`` nobody asked for; a stale slot map gets
``MOVED``. Both, like a connection failing, are reported to the failure
callback as a lost connection: the backend's `receive` raises it and the hub
reconnects, which reads the slot map again and subscribes anew. A link silent
for the liveness interval gets a ``PING`` (see ``liveness``); no reply within
another interval and it is taken for dead the same way.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Collection
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..liveness import Watchdog
from .cluster import Address, ClusterConnections, cluster_down, redirection, slot_of
from .connection import ConnectionClosed, discard


class ShardLink:
    """One node's sharded pub/sub connection, and the replies still due on it."""

    def __init__(self, connection: AbstractConnection, liveness: float | None) -> None:
        self.connection = connection
        self.failed: BaseException | None = None
        # Per command sent, in order: [replies still due, future or None, names left].
        self.due: deque[list[Any]] = deque()
        self.leaving: Counter[bytes] = Counter()  # our SUNSUBSCRIBEs not yet confirmed
        self.send_lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None
        self.watchdog = Watchdog(liveness, self.ping, self.dead)

    async def ping(self) -> None:
        """The liveness probe (its reply, ``pong``, is read and skipped by the reader)."""
        async with self.send_lock:
            await self.connection.send_command("PING")

    async def dead(self, reason: str) -> None:
        """The watchdog's verdict: fail the link and drop the connection under the reader."""
        self.fail(RedisTimeoutError(f"a sharded pub/sub connection is taken for dead: {reason}"))
        await discard(self.connection)

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
        self.watchdog.stop()
        if self.failed is None:
            self.failed = exc
        due, self.due = self.due, deque()
        for _, future, _ in due:
            if future is not None and not future.done():
                future.set_exception(ConnectionClosed(str(exc)))


class ShardSubscriptions:
    """The shard channels one backend instance subscribed, on their masters.

    ``on_message(name, payload)`` gets every message of a subscribed channel;
    ``on_failure(exc)`` the first failure of any link.
    """

    def __init__(
        self,
        cluster: ClusterConnections,
        owner: str,
        on_message: Callable[[bytes, bytes], None],
        on_failure: Callable[[BaseException], None],
        liveness: float | None,
    ) -> None:
        self._cluster = cluster
        self._liveness = liveness
        self._owner = owner
        self._on_message = on_message
        self._on_failure = on_failure
        self._links: dict[Address, ShardLink] = {}
        self._links_lock = asyncio.Lock()
        self._where: dict[bytes, Address] = {}  # subscribed name -> its master

    def close(self, exc: BaseException) -> list[AbstractConnection]:
        """Fail every link with ``exc`` and stop its task; return the connections
        for the caller to close."""
        links, self._links = self._links, {}
        self._where.clear()
        for link in links.values():
            link.fail(exc)
            if link.task is not None:
                link.task.cancel()
        return [link.connection for link in links.values()]

    async def subscribe(self, names: Collection[bytes]) -> None:
        """SSUBSCRIBE ``names`` on their masters; return once all are confirmed."""
        groups: dict[Address, dict[int, list[bytes]]] = {}
        for name in names:
            address = self._cluster.owner_of(name)
            self._where[name] = address
            groups.setdefault(address, {}).setdefault(slot_of(name), []).append(name)
        futures: list[asyncio.Future[None]] = []
        for address, slots in groups.items():
            link = await self._link(address)
            for group in slots.values():
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                futures.append(future)
                await link.send("SSUBSCRIBE", group, future)
        for future in futures:
            try:
                await future
            except ResponseError as exc:
                if redirection(exc) is not None or cluster_down(exc):
                    # A stale slot map: the hub's reconnect reads it again.
                    raise ConnectionClosed(f"{self._owner}: SSUBSCRIBE answered {exc}") from None
                raise

    async def unsubscribe(self, names: Collection[bytes]) -> None:
        """SUNSUBSCRIBE ``names``, not waiting for the confirmations: messages still
        in flight are dropped by name."""
        groups: dict[Address, dict[int, list[bytes]]] = {}
        for name in names:
            address = self._where.pop(name, None)
            if address is not None:
                groups.setdefault(address, {}).setdefault(slot_of(name), []).append(name)
        for address, slots in groups.items():
            link = self._links.get(address)
            if link is not None and link.failed is None:
                for group in slots.values():
                    await link.send("SUNSUBSCRIBE", group, None)

    async def _link(self, address: Address) -> ShardLink:
        """The sharded pub/sub connection to ``address``, opened at its first channel."""
        async with self._links_lock:
            link = self._links.get(address)
            if link is not None:
                return link
            node = await self._cluster.node(address)
            link = ShardLink(await node.open_dedicated(), self._liveness)
            self._links[address] = link
            link.task = asyncio.get_running_loop().create_task(self._read(link))
            link.watchdog.start()
            return link

    async def _read(self, link: ShardLink) -> None:
        """Read ``link`` until it fails; the failure goes to ``on_failure``."""
        try:
            while True:
                try:
                    reply = await link.connection.read_response(disconnect_on_error=False)
                except ResponseError as exc:
                    link.watchdog.heard()
                    link.replied(exc)  # an error reply to SSUBSCRIBE (an ACL, MOVED)
                    continue
                link.watchdog.heard()
                if not isinstance(reply, list) or not reply:
                    continue
                kind = reply[0]
                if kind == b"smessage":
                    if reply[1] in self._where:
                        self._on_message(reply[1], reply[2])
                elif kind == b"ssubscribe":
                    link.replied(None)
                elif (
                    kind == b"sunsubscribe" and not link.left(reply[1]) and reply[1] in self._where
                ):
                    raise ConnectionClosed(
                        f"{self._owner}: Redis ended the subscription of "
                        f"{reply[1].decode(errors='replace')!r} (its slot moved)"
                    )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            dead = link.failed  # set by the watchdog, which dropped the connection
            link.fail(exc)
            self._on_failure(dead if isinstance(dead, RedisTimeoutError) else exc)
