"""`RedisStreamBackend`: one Redis Stream per channel, trimmed to about ``MAXLEN``.

Publishing is ``XADD ... MAXLEN ~ N``, with the key's time to live refreshed
in the same step (``IDLE_RETENTION``); event ids are stream ids, so history,
``since=`` and resuming after a reconnect come from the stream. One reader
keeps a blocking ``XREAD`` on every subscribed stream on a connection of its
own, opened when there is something to read; a subscription made while it
blocks wakes it with ``CLIENT UNBLOCK`` (or, where ACLs forbid that, the
reader polls).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...options import is_whole_number, option_error
from ..base import BackendConfig, RawEvent
from ..history import IDLE_RETENTION, check_idle_retention
from . import stream_ids
from .connection import ConnectionClosed, RedisBackendBase, discard
from .publishing import FIELD, StreamPublisher
from .queues import RedisQueues
from .wire import key_error, raise_errors, text

logger = logging.getLogger("django_broadcaster")

#: Entries one XREAD returns per stream at most.
XREAD_COUNT = 100
#: How long one XREAD blocks on the server (ms); the reader re-issues it.
XREAD_BLOCK_MS = 5000
#: The same when CLIENT UNBLOCK is not permitted (ACLs, managed Redis): the
#: reader then notices newly subscribed streams by polling this often.
XREAD_POLL_MS = 100
#: Extra time for an XREAD reply before the connection is taken for dead.
XREAD_GRACE = 5.0
#: Entries per XRANGE when history reads a whole stream.
HISTORY_PAGE = 1000


class RedisStreamBackend(RedisQueues, RedisBackendBase):
    """Redis Streams: history and resume from stream ids, bounded by ``MAXLEN``."""

    supports_history = True
    default_options: ClassVar[Mapping[str, Any]] = {
        **RedisBackendBase.default_options,
        "MAXLEN": 10000,
        "IDLE_RETENTION": IDLE_RETENTION,
    }

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._publisher = StreamPublisher(
            self.connections, self.options["MAXLEN"], self.options["IDLE_RETENTION"]
        )
        self._streams: dict[str, str] = {}  # subscribed stream keys -> last id read
        self._channels: dict[str, str] = {}  # subscribed stream keys -> channel names
        self._generation = 0  # bumped whenever the set of streams changes
        self._reader: AbstractConnection | None = None
        self._reader_id: int | None = None
        self._reading: int | None = None  # generation of the XREAD in flight
        self._can_unblock: bool | None = None
        self._idle: asyncio.Future[None] | None = None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        super().check_options(options)
        maxlen = options.get("MAXLEN", 1)
        if not is_whole_number(maxlen, 1):
            raise option_error("MAXLEN", "a whole number >= 1 (events kept per stream)", maxlen)
        check_idle_retention(options)

    # -- connection ----------------------------------------------------------

    async def close(self) -> None:
        reader, self._reader, self._reader_id = self._reader, None, None
        self._streams.clear()
        self._channels.clear()
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():
            idle.set_exception(ConnectionClosed(f"{self.alias!r} was closed"))
        await self.connections.close(reader)

    async def _open_reader(self) -> AbstractConnection:
        """The reading connection, opened when there is a stream to read, and again
        after a cancelled XREAD (whose reply may still be due on the old one)."""
        connection = await self.connections.open_dedicated()
        try:
            await connection.send_command("CLIENT", "ID")
            reply = await connection.read_response(timeout=XREAD_GRACE)
            if reply is None:
                raise RedisTimeoutError(f"no reply to CLIENT ID within {XREAD_GRACE:.0f}s")
            reader_id = int(reply)
            if self._can_unblock is None:
                await self._probe_unblock(reader_id)
            if not self.connections.is_open:
                raise ConnectionClosed(f"{self.alias!r} was closed")
        except BaseException:
            await discard(connection)
            raise
        self._reader, self._reader_id = connection, reader_id
        return connection

    async def _probe_unblock(self, reader_id: int) -> None:
        try:
            raise_errors(await self.connections.execute(("CLIENT", "UNBLOCK", reader_id)))
        except ResponseError as exc:
            self._can_unblock = False
            logger.info(
                "broadcast backend %r cannot use CLIENT UNBLOCK (%s); its Streams reader "
                "polls every %d ms for newly subscribed channels instead",
                self.alias,
                exc,
                XREAD_POLL_MS,
            )
        else:
            self._can_unblock = True

    # -- traffic -------------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> str | None:
        (result,) = await self.publish_many(((channel, payload),))
        if isinstance(result, Exception):
            raise result
        return result

    def wake_commands(self, queue: str, wake: bytes, ttl_ms: int) -> list[tuple[Any, ...]]:
        # A wake-up stream needs no past: one entry, gone with the queue.
        key = self.wire_name(queue)
        return [("XADD", key, "MAXLEN", "1", "*", FIELD, wake), ("PEXPIRE", key, ttl_ms)]

    async def publish_many(
        self, events: Sequence[tuple[str, bytes]]
    ) -> list[str | Exception | None]:
        entries = [(self.wire_name(channel), payload) for channel, payload in events]
        replies = await self._publisher.send(entries)
        return [
            key_error("publish on", channel, key, reply)
            if isinstance(reply, Exception)
            else text(reply)
            for (channel, _), (key, _), reply in zip(events, entries, replies, strict=True)
        ]

    async def subscribe(self, positions: Mapping[str, str | None]) -> Mapping[str, str]:
        if not self.connections.is_open:
            raise ConnectionClosed(f"{self.alias!r} is closed")
        keys = {self.wire_name(channel): channel for channel in positions}
        starts: dict[str, str] = {}
        for key, position in zip(keys, positions.values(), strict=True):
            if position is not None:
                self.id_order(position)  # a ValueError for anything but a stream id
                starts[key] = position
        unknown = [key for key in keys if key not in starts]
        if unknown:
            # "From now" is the stream's last entry at this moment: an event added
            # after subscribe() returns is read even if the reader looks later.
            replies = await self.connections.execute(
                *[("XREVRANGE", k, "+", "-", "COUNT", 1) for k in unknown]
            )
            for key, reply in zip(unknown, replies, strict=True):
                if isinstance(reply, Exception):
                    if "WRONGTYPE" not in str(reply):
                        raise reply
                    reply = None  # not a stream: the reader logs it and leaves it alone
                entries = _entries(reply)
                starts[key] = entries[0][0] if entries else "0-0"
        self._streams.update(starts)
        self._channels.update(keys)
        self._generation += 1
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():
            idle.set_result(None)
        await self._wake_reader()
        # The baselines: the hub resumes these channels from there after a reconnect.
        return {keys[key]: starts[key] for key in unknown}

    async def _wake_reader(self) -> None:
        """Make an XREAD blocked on the old set of streams return, so the reader
        re-issues it with the new set."""
        generation = self._generation
        for attempt in range(20):
            if self._reading is None or self._reading >= generation:
                return  # no XREAD in flight, or it already covers the new streams
            if not self._can_unblock or self._reader_id is None:
                return  # the reader polls every XREAD_POLL_MS
            (unblocked,) = await self.connections.execute(("CLIENT", "UNBLOCK", self._reader_id))
            if isinstance(unblocked, ResponseError):
                self._can_unblock = False  # ACLs changed: poll from now on
                return
            if unblocked:
                return
            # Not blocked yet (the XREAD is on its way) or just answered: look again.
            await asyncio.sleep(0.001 * attempt)

    async def unsubscribe(self, channels: Collection[str]) -> None:
        # The XREAD in flight may still return entries of these streams; they are
        # dropped by key. No need to wake the reader.
        for channel in channels:
            key = self.wire_name(channel)
            self._streams.pop(key, None)
            self._channels.pop(key, None)
        self._generation += 1

    async def receive(self) -> Sequence[RawEvent]:
        while True:
            if not self.connections.is_open:
                raise ConnectionClosed(f"{self.alias!r} is closed")
            if not self._streams:
                if self._idle is None:
                    self._idle = asyncio.get_running_loop().create_future()
                await self._idle
                continue
            reader = self._reader or await self._open_reader()
            keys = list(self._streams)
            if not keys:
                continue  # all unsubscribed while the connection opened
            starts = [self._streams[key] for key in keys]
            block = XREAD_BLOCK_MS if self._can_unblock else XREAD_POLL_MS
            self._reading = self._generation
            try:
                await reader.send_command(
                    "XREAD", "COUNT", XREAD_COUNT, "BLOCK", block, "STREAMS", *keys, *starts
                )
                reply = await asyncio.wait_for(
                    reader.read_response(disconnect_on_error=False), block / 1000 + XREAD_GRACE
                )
            except ResponseError:
                # The connection is fine; a key is wrong (WRONGTYPE: not a stream).
                if not await self._drop_foreign_keys(keys):
                    raise
                continue
            except BaseException as exc:
                # A reply may still be due on this connection: never reuse it.
                if self._reader is reader:
                    self._reader, self._reader_id = None, None
                await discard(reader)
                if isinstance(exc, asyncio.TimeoutError):
                    raise RedisTimeoutError(
                        f"no reply to XREAD within {block / 1000 + XREAD_GRACE:.0f}s"
                    ) from None
                raise
            finally:
                self._reading = None
            events = self._collect(reply)
            if events:
                return events

    async def _drop_foreign_keys(self, keys: list[str]) -> bool:
        """Stop reading keys that hold something else than a stream (another
        program's data under the same name); log each. ``False`` if none does."""
        replies = await self.connections.execute(*[("TYPE", k) for k in keys])
        types = [text(kind) for kind in raise_errors(replies)]
        foreign = [(key, kind) for key, kind in zip(keys, types, strict=True)]
        foreign = [(key, kind) for key, kind in foreign if kind not in ("stream", "none")]
        for key, kind in foreign:
            channel = self._channels.pop(key, key)
            self._streams.pop(key, None)
            logger.error(
                "broadcast backend %r cannot read channel %r: Redis key %r holds a %s, not a "
                "stream; set a KEY_PREFIX to keep broadcast streams apart from other data",
                self.alias,
                channel,
                key,
                kind,
            )
        return bool(foreign)

    def _collect(self, reply: Any) -> list[RawEvent]:
        events: list[RawEvent] = []
        order = self.id_order
        for key_bytes, entries in reply or ():
            key = text(key_bytes)
            last = self._streams.get(key)
            channel = self._channels.get(key)
            if last is None or channel is None:
                continue  # unsubscribed meanwhile
            after = order(last)
            for entry_id, payload in _entries(entries):
                # Skip what a re-subscription (with a later start) already covers.
                if order(entry_id) > after:
                    events.append(RawEvent(channel, payload, entry_id))
                    last = entry_id
            self._streams[key] = last
        return events

    async def history(
        self, channel: str, since: str | None, limit: int | None
    ) -> Sequence[RawEvent]:
        if limit is None:
            events: list[RawEvent] = []
            while True:  # in pages, so one reply never holds a whole long stream
                page = await self.history_page(channel, since, HISTORY_PAGE)
                events.extend(page)
                if len(page) < HISTORY_PAGE:
                    return events
                since = page[-1].id
        start = "-" if since is None else stream_ids.after(self.id_order(since))
        if start is None or limit <= 0:
            return []  # nothing can follow the largest id
        reply = await self.connections.pooled_command(
            "XREVRANGE", self.wire_name(channel), "+", start, "COUNT", limit
        )
        return [RawEvent(channel, payload, entry_id) for entry_id, payload in _entries(reply)[::-1]]

    async def history_page(self, channel: str, since: str | None, count: int) -> Sequence[RawEvent]:
        start = "-" if since is None else stream_ids.after(self.id_order(since))
        if start is None or count <= 0:
            return []  # nothing can follow the largest id
        reply = await self.connections.pooled_command(
            "XRANGE", self.wire_name(channel), start, "+", "COUNT", count
        )
        return [RawEvent(channel, payload, entry_id) for entry_id, payload in _entries(reply)]

    async def retains(self, channel: str, event_id: str) -> bool:
        order = self.id_order(event_id)
        key = self.wire_name(channel)
        try:
            reply = await self.connections.pooled_command("XINFO", "STREAM", key)
        except ResponseError as exc:
            if str(exc) != "no such key":
                raise key_error("read", channel, key, exc) from None
            reply = None
        return stream_ids.retains(None if reply is None else stream_ids.fields(reply), order)

    def id_order(self, event_id: str) -> tuple[int, int]:
        """``(milliseconds, sequence)``; ``"N"`` is ``"N-0"``, as Redis reads it."""
        return stream_ids.stream_id_order(event_id, type(self).__name__)


def _entries(reply: Any) -> list[tuple[str, bytes]]:
    """``(id, payload)`` pairs of an XRANGE/XREAD entry list, raw or parsed by redis-py."""
    entries = []
    for entry_id, fields in reply or ():
        payload: Any = None
        if isinstance(fields, dict):
            payload = fields.get(FIELD)
        elif fields:
            for index in range(0, len(fields) - 1, 2):
                if fields[index] == FIELD:
                    payload = fields[index + 1]
                    break
        # An entry without our field (someone's XADD) goes up as an empty,
        # undecodable payload: the hub logs and counts it, and moves past it.
        entries.append((text(entry_id), payload if isinstance(payload, bytes) else b""))
    return entries
