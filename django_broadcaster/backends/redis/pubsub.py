"""`RedisBackend`: Redis pub/sub, at-most-once, no history.

One pub/sub connection, opened at the first subscription, carries every
channel. Replies confirming SUBSCRIBE/UNSUBSCRIBE arrive on it between the
messages, so exactly one task reads it at a time: the reader's `receive`, or
a `subscribe` waiting for its confirmation while nobody else reads. A
`Watchdog` sends ``PING`` on it after ``OPTIONS["LIVENESS_INTERVAL"]`` seconds of
silence and drops it when that goes unanswered (a half-open link).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..base import BackendConfig, RawEvent
from ..liveness import LIVENESS_INTERVAL, Watchdog, check_liveness_interval
from .connection import ConnectionClosed, RedisBackendBase, discard
from .queues import RedisQueues
from .wire import key_error


class _Link:
    """The pub/sub connection, who is reading it, and the confirmations still due."""

    def __init__(self, connection: AbstractConnection, liveness: float | None) -> None:
        self.connection = connection
        self.failed: BaseException | None = None
        self.reading = False
        self.read_done: asyncio.Future[None] | None = None
        # Per command sent, in order: [confirmations still due, future or None].
        self.expected: deque[list[Any]] = deque()
        self.send_lock = asyncio.Lock()
        self.watchdog = Watchdog(liveness, self.ping, self.dead)
        self.watchdog.start()

    async def ping(self) -> None:
        """The liveness probe (its reply, ``pong``, is read and skipped by the reader)."""
        async with self.send_lock:
            await self.connection.send_command("PING")

    async def dead(self, reason: str) -> None:
        """The watchdog's verdict: fail the link and drop the connection under the reader."""
        self.fail(RedisTimeoutError(f"the pub/sub connection is taken for dead: {reason}"))
        await discard(self.connection)

    def fail(self, exc: BaseException) -> None:
        """Mark the link unusable; every command waiting for confirmation fails."""
        self.watchdog.stop()
        if self.failed is None:
            self.failed = exc
        expected, self.expected = self.expected, deque()
        for _, future in expected:
            if future is not None and not future.done():
                future.set_exception(ConnectionClosed(str(exc)))

    async def send(
        self, command: str, names: list[bytes], future: asyncio.Future[None] | None
    ) -> None:
        """Send SUBSCRIBE or UNSUBSCRIBE; ``future`` is done once all ``names`` are
        confirmed (``None``: nobody waits)."""
        async with self.send_lock:
            if self.failed is not None:
                raise ConnectionClosed(str(self.failed))
            self.expected.append([len(names), future])
            try:
                # Shielded: redis-py drops a connection whose send was cancelled,
                # and a subscriber cancelled while subscribing must not cost a
                # reconnection of every channel.
                await asyncio.shield(self.connection.send_command(command, *names))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self.fail(exc)
                raise

    def one_read(self) -> asyncio.Future[None]:
        """A future done when the task reading the connection has read one reply."""
        done = self.read_done
        if done is None:
            done = self.read_done = asyncio.get_running_loop().create_future()
        return done

    def confirmed(self, error: BaseException | None) -> None:
        """Count one confirmation (or an error reply) for the oldest command due."""
        if not self.expected:
            return
        entry = self.expected[0]
        entry[0] -= 1
        if entry[0] <= 0 or error is not None:
            self.expected.popleft()
            future = entry[1]
            if future is not None and not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)


class RedisBackend(RedisQueues, RedisBackendBase):
    """Redis pub/sub: one connection carries every channel; no history (at-most-once)."""

    supports_history = False
    #: The command publishing on a channel (a cluster's shards use SPUBLISH).
    publish_command: ClassVar[str] = "PUBLISH"
    default_options: ClassVar[Mapping[str, Any]] = {
        **RedisBackendBase.default_options,
        "LIVENESS_INTERVAL": LIVENESS_INTERVAL,
    }

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._link: _Link | None = None
        self._names: dict[bytes, str] = {}  # subscribed wire names -> channel names
        self._inbox: deque[RawEvent] = deque()
        self._idle: asyncio.Future[None] | None = None
        self._link_lock = asyncio.Lock()

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        super().check_options(options)
        check_liveness_interval(options)

    async def close(self) -> None:
        link, self._link = self._link, None
        self._names.clear()
        closed = ConnectionClosed(f"{self.alias!r} was closed")
        if link is not None:
            link.fail(closed)
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():
            idle.set_exception(closed)
        await self.connections.close(link.connection if link is not None else None)

    async def _ensure_link(self) -> _Link:
        """The pub/sub connection, opened at the first subscription after `connect`."""
        async with self._link_lock:
            if self._link is not None:
                return self._link
            connection = await self.connections.open_dedicated()
            if not self.connections.is_open:
                await discard(connection)
                raise ConnectionClosed(f"{self.alias!r} was closed")
            self._link = link = _Link(connection, self.options["LIVENESS_INTERVAL"])
            idle, self._idle = self._idle, None
            if idle is not None and not idle.done():
                idle.set_result(None)
            return link

    async def publish(self, channel: str, payload: bytes) -> str | None:
        (result,) = await self.publish_many(((channel, payload),))
        if isinstance(result, Exception):
            raise result
        return None

    def wake_commands(self, queue: str, wake: bytes, ttl_ms: int) -> list[tuple[Any, ...]]:
        return [(self.publish_command, self.wire_name(queue), wake)]

    async def publish_many(
        self, events: Sequence[tuple[str, bytes]]
    ) -> list[str | Exception | None]:
        names = [self.wire_name(channel) for channel, _ in events]
        replies = await self.connections.execute(
            *[
                (self.publish_command, name, payload)
                for name, (_, payload) in zip(names, events, strict=True)
            ]
        )
        # An error reply (an ACL refusing the channel, say) fails that publish alone.
        return [
            key_error("publish on", channel, name, reply) if isinstance(reply, Exception) else None
            for (channel, _), name, reply in zip(events, names, replies, strict=True)
        ]

    async def subscribe(self, positions: Mapping[str, str | None]) -> Mapping[str, str]:
        names = {self.wire_name(channel).encode(): channel for channel in positions}
        if names:
            link = await self._ensure_link()
            self._names.update(names)
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            await link.send("SUBSCRIBE", list(names), future)
            await self._until(link, future)
        return {}  # no history, so no baselines

    async def unsubscribe(self, channels: Collection[str]) -> None:
        names = [self.wire_name(channel).encode() for channel in channels]
        for name in names:
            self._names.pop(name, None)
        link = self._link
        if names and link is not None and link.failed is None:
            # Not awaited: messages still in flight are dropped by name.
            await link.send("UNSUBSCRIBE", names, None)

    async def receive(self) -> Sequence[RawEvent]:
        inbox = self._inbox
        while not inbox:
            link = self._link
            if link is None:
                if not self.connections.is_open:
                    raise ConnectionClosed(f"{self.alias!r} is closed")
                # Nothing subscribed yet: wait for the first subscribe() (or close()).
                if self._idle is None:
                    self._idle = asyncio.get_running_loop().create_future()
                await self._idle
            elif link.reading:
                await link.one_read()
            else:
                await self._read(link)
        events = list(inbox)
        inbox.clear()
        return events

    async def _until(self, link: _Link, future: asyncio.Future[None]) -> None:
        """Wait for ``future``, reading the connection while nobody else does."""
        while not future.done():
            if link.reading:
                await asyncio.wait((future, link.one_read()), return_when=asyncio.FIRST_COMPLETED)
            else:
                await self._read(link)
        future.result()

    async def _read(self, link: _Link) -> None:
        """Read and handle one reply; the connection failing fails the link."""
        if link.failed is not None:
            raise ConnectionClosed(str(link.failed))
        link.reading = True
        try:
            reply = await link.connection.read_response(disconnect_on_error=False)
        except ResponseError as exc:
            # An error reply to SUBSCRIBE (an ACL refusing a channel, say).
            link.confirmed(exc)
            return
        except asyncio.CancelledError:
            raise  # the parsers resume a partly read reply on the next read
        except Exception as exc:
            dead = link.failed  # set by the watchdog, which dropped the connection
            link.fail(exc)
            if isinstance(dead, RedisTimeoutError):
                raise dead from None
            raise
        finally:
            link.reading = False
            done, link.read_done = link.read_done, None
            if done is not None and not done.done():
                done.set_result(None)
        link.watchdog.heard()
        if not isinstance(reply, list) or not reply:
            return
        kind = reply[0]
        if kind == b"message":
            channel = self._names.get(reply[1])
            if channel is not None:
                self._inbox.append(RawEvent(channel, reply[2], None))
        elif kind == b"subscribe" or kind == b"unsubscribe":
            link.confirmed(None)
