"""The Streams reader's wake-ups: which followed streams changed, told by pub/sub.

Each publish through `RedisStreamBackend` appends to the channel's stream and,
in the same script, publishes an empty message on the channel's wake-up name
(``<KEY_PREFIX>:_broadcaster:stream:<channel>``, in the reserved namespace, so
no channel of a `RedisBackend` sharing the prefix is ever named so). The reader
subscribes to the wake-up names of the streams it follows, on a pub/sub
connection of its own, and reads only the streams named: the cost of an event
does not grow with the number of streams a process follows.

A wake-up carries nothing; the stream stays the source of truth. Redis's
confirmation of a ``SUBSCRIBE`` counts as a wake-up, so what was added between
a subscription's start and the confirmation is read then; a wake-up lost with
a connection is made up for by the reconnect, which subscribes every stream
again (and so reads each once from its position).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...events import RESERVED_PREFIX
from .connection import ConnectionClosed

#: The wake-up name of channel ``C`` is the wire name of ``WAKE_NAMESPACE + C``.
WAKE_NAMESPACE = RESERVED_PREFIX + "stream:"
#: Seconds of silence after which the connection is checked with a ``PING``.
IDLE_CHECK = 5.0
#: Seconds a ``PING`` may go unanswered before the connection is taken for dead.
PING_GRACE = 5.0
#: The replies that name a stream to read.
WAKING = (b"message", b"subscribe")


class WakeLink:
    """The pub/sub connection carrying one reader's wake-ups. One task reads it
    (the reader's `woken`); any task may send on it."""

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.failed: BaseException | None = None
        self._send_lock = asyncio.Lock()
        self._pinged = False
        # Whether a reply is already buffered: can_read from redis-py 8 on.
        self._buffered = getattr(connection, "can_read", None) or connection.can_read_destructive

    async def send(self, command: str, names: Sequence[bytes] = ()) -> None:
        """Send ``SUBSCRIBE``, ``UNSUBSCRIBE`` or ``PING``; the link fails with the
        connection."""
        async with self._send_lock:
            if self.failed is not None:
                raise ConnectionClosed(str(self.failed))
            try:
                # Shielded: redis-py drops a connection whose send was cancelled,
                # and a subscriber cancelled while subscribing must not cost a
                # reconnection of every channel.
                await asyncio.shield(self.connection.send_command(command, *names))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self.failed = exc
                raise

    async def woken(self) -> list[bytes]:
        """The wake-up names of the next wake-ups and confirmed subscriptions: waits
        for one, then takes every one already received. Returns ``[]`` at the answer
        to a ``PING`` too (after `IDLE_CHECK` seconds of silence), so the reader can
        do its periodic work."""
        names: list[bytes] = []
        while not names or await self._buffered():
            reply = await self._read()
            if isinstance(reply, list) and len(reply) > 1 and reply[0] in WAKING:
                names.append(reply[1])
            elif isinstance(reply, list) and reply and reply[0] == b"pong" and not names:
                return names
        return names

    async def _read(self) -> Any:
        """One reply; after ``IDLE_CHECK`` seconds of silence a ``PING`` must be
        answered within ``PING_GRACE`` (a half-open connection is noticed)."""
        while True:
            if self.failed is not None:
                raise ConnectionClosed(str(self.failed))
            try:
                reply = await self.connection.read_response(
                    timeout=PING_GRACE if self._pinged else IDLE_CHECK,
                    disconnect_on_error=False,
                )
            except ResponseError as exc:
                raise ResponseError(
                    f"the Streams reader cannot subscribe to its wake-up channels ({exc}); "
                    "let the Redis user SUBSCRIBE to the KEY_PREFIX's channels (&<prefix>:*)"
                ) from None
            except asyncio.CancelledError:
                raise  # the parsers resume a partly read reply on the next read
            except BaseException as exc:
                self.failed = exc
                raise
            if reply is not None:
                self._pinged = False
                return reply
            if self._pinged:
                self.failed = RedisTimeoutError(
                    f"no reply to PING on the Streams wake-up connection within {PING_GRACE:g}s"
                )
                raise self.failed
            await self.send("PING")
            self._pinged = True
