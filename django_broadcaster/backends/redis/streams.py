"""`RedisStreamBackend`: one Redis Stream per channel, trimmed to about ``MAXLEN``.

Publishing is ``XADD ... MAXLEN ~ N`` in a script that also refreshes the key's
time to live (``IDLE_RETENTION``) and publishes a wake-up for the stream's
readers (see ``stream_wakes``); event ids are stream ids, so history,
``since=`` and resuming after a reconnect come from the stream. One reader per
backend instance follows every subscribed stream: a pub/sub connection tells
it which streams changed, and it reads those alone with a non-blocking
``XREAD`` on a second connection of its own, from the last id it read of each.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ... import loops
from ...options import is_whole_number, option_error
from ..base import BackendConfig, RawEvent
from ..history import IDLE_RETENTION, check_idle_retention
from . import stream_ids
from .connection import ConnectionClosed, RedisBackendBase, discard, timeout
from .publishing import FIELD, StreamPublisher
from .queues import RedisQueues
from .stream_wakes import WAKE_NAMESPACE, WakeLink
from .wire import key_error, raise_errors, round_trip, text

logger = logging.getLogger("django_broadcaster")

#: Entries one XREAD returns per stream at most (a stream that gives that many
#: is read again at once).
XREAD_COUNT = 100
#: Streams one XREAD reads at most (after a reconnect every followed stream is
#: read once, in XREADs of this many).
XREAD_STREAMS = 500
#: Seconds an XREAD reply may take before the connection is taken for dead.
XREAD_GRACE = 5.0
#: Seconds between reads of every subscribed stream, wake-up or not: an entry added
#: outside the bus (a bare ``XADD``) wakes nobody.
CATCH_UP_SECONDS = 5.0
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
        self._wakes: dict[bytes, str] = {}  # their wake-up names -> stream keys
        self._dirty: set[str] = set()  # stream keys to read
        self._caught_up = 0.0  # loop time every stream was last marked to read
        self._link: WakeLink | None = None
        self._link_lock = asyncio.Lock()
        self._fetch: AbstractConnection | None = None  # the reader's XREAD connection
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
        link, self._link = self._link, None
        fetch, self._fetch = self._fetch, None
        self._streams.clear()
        self._channels.clear()
        self._wakes.clear()
        self._dirty.clear()
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():
            idle.set_exception(ConnectionClosed(f"{self.alias!r} was closed"))
        await self.connections.close(link.connection if link is not None else None, fetch)

    async def _open(self) -> AbstractConnection:
        """A connection of the reader's own, refused once the backend is closed."""
        connection = await self.connections.open_dedicated()
        if not self.connections.is_open:
            await discard(connection)
            raise ConnectionClosed(f"{self.alias!r} was closed")
        return connection

    async def _ensure_link(self) -> WakeLink:
        """The wake-up connection, opened at the first subscription after `connect`."""
        async with self._link_lock:
            if self._link is None:
                self._link = WakeLink(await self._open())
                idle, self._idle = self._idle, None
                if idle is not None and not idle.done():
                    idle.set_result(None)
            return self._link

    def wake_name(self, channel: str) -> str:
        """The pub/sub channel on which publishes on ``channel`` wake its readers."""
        return self.wire_name(WAKE_NAMESPACE + channel)

    # -- traffic -------------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> str | None:
        (result,) = await self.publish_many(((channel, payload),))
        if isinstance(result, Exception):
            raise result
        return result

    async def expire(self, channel: str, seconds: float) -> None:
        key = self.wire_name(channel)
        command = ("PEXPIRE", key, math.ceil(seconds * 1000)) if seconds > 0 else ("UNLINK", key)
        raise_errors(await self.connections.execute(command))

    def wake_commands(self, queue: str, wake: bytes, ttl_ms: int) -> list[tuple[Any, ...]]:
        # A wake-up stream needs no past: one entry, gone with the queue.
        key = self.wire_name(queue)
        return [
            ("XADD", key, "MAXLEN", "1", "*", FIELD, wake),
            ("PEXPIRE", key, ttl_ms),
            ("PUBLISH", self.wake_name(queue), b""),
        ]

    async def publish_many(
        self, events: Sequence[tuple[str, bytes]]
    ) -> list[str | Exception | None]:
        entries = [
            (self.wire_name(channel), self.wake_name(channel), payload)
            for channel, payload in events
        ]
        replies = await self._publisher.send(entries)
        return [
            key_error("publish on", channel, key, reply)
            if isinstance(reply, Exception)
            else text(reply)
            for (channel, _), (key, _, _), reply in zip(events, entries, replies, strict=True)
        ]

    async def starting_points(
        self, positions: Mapping[str, str | None]
    ) -> tuple[dict[str, str], dict[str, str], list[str]]:
        """What ``subscribe(positions)`` starts from: the stream key of each channel
        (key -> channel), the id each stream is read after (its position, else its
        newest entry now, ``"0-0"`` when it has none), and the keys that had no
        position, whose starts are the baselines ``subscribe()`` returns."""
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
        return keys, starts, unknown

    async def subscribe(self, positions: Mapping[str, str | None]) -> Mapping[str, str]:
        keys, starts, unknown = await self.starting_points(positions)
        link = await self._ensure_link()
        self._streams.update(starts)
        self._channels.update(keys)
        wakes = {self.wake_name(channel).encode(): key for key, channel in keys.items()}
        self._wakes.update(wakes)
        # Each stream is read from its start once Redis confirms its SUBSCRIBE.
        if wakes:  # nothing to follow (a reconnect with no channel wanted)
            await link.send("SUBSCRIBE", list(wakes))
        # The baselines: the hub resumes these channels from there after a reconnect.
        return {keys[key]: starts[key] for key in unknown}

    async def unsubscribe(self, channels: Collection[str]) -> None:
        # Entries of these streams still being read are dropped by key.
        names = []
        for channel in channels:
            key = self.wire_name(channel)
            self._streams.pop(key, None)
            self._channels.pop(key, None)
            self._dirty.discard(key)
            name = self.wake_name(channel).encode()
            self._wakes.pop(name, None)
            names.append(name)
        link = self._link
        if names and link is not None and link.failed is None:
            await link.send("UNSUBSCRIBE", names)

    async def receive(self) -> Sequence[RawEvent]:
        loop = asyncio.get_running_loop()
        while True:
            if not self.connections.is_open:
                raise ConnectionClosed(f"{self.alias!r} is closed")
            if self._streams and loop.time() - self._caught_up >= CATCH_UP_SECONDS:
                self._dirty.update(self._streams)
                self._caught_up = loop.time()
            if self._dirty:
                events = await self._read_streams()
                if events:
                    return events
                continue
            link = self._link
            if link is None:
                # Nothing subscribed yet: wait for the first subscribe() (or close()).
                if self._idle is None:
                    self._idle = asyncio.get_running_loop().create_future()
                await self._idle
                continue
            wakes = self._wakes
            for name in await link.woken():
                key = wakes.get(name)
                if key is not None:
                    self._dirty.add(key)

    async def _read_streams(self) -> list[RawEvent]:
        """Read the streams woken (up to XREAD_STREAMS of them) from their positions."""
        dirty = self._dirty
        batch = list(itertools.islice(dirty, XREAD_STREAMS))
        dirty.difference_update(batch)
        if not any(key in self._streams for key in batch):
            return []
        fetch = self._fetch or await self._open()
        self._fetch = fetch
        keys = [key for key in batch if key in self._streams]  # not unsubscribed meanwhile
        if not keys:
            return []
        starts = [self._streams[key] for key in keys]
        command = ("XREAD", "COUNT", XREAD_COUNT, "STREAMS", *keys, *starts)
        try:
            # Not asyncio.wait_for: on Python 3.10 and 3.11 it loses a cancellation that
            # lands as the reply comes, and the hub's reader would then never stop.
            async with timeout(XREAD_GRACE):
                (reply,) = await round_trip(fetch, [command])
        except loops.ERRORS_AND_CANCELLATION as exc:
            # A reply may still be due on this connection: never reuse it.
            if self._fetch is fetch:
                self._fetch = None
            await discard(fetch)
            if isinstance(exc, asyncio.TimeoutError):
                raise RedisTimeoutError(f"no reply to XREAD within {XREAD_GRACE:.0f}s") from None
            raise
        if isinstance(reply, ResponseError):
            # The connection is fine; a key is wrong (WRONGTYPE: not a stream).
            if not await self._drop_foreign_keys(keys):
                raise reply
            dirty.update(key for key in keys if key in self._streams)
            return []
        return self._collect(reply)

    async def _drop_foreign_keys(self, keys: list[str]) -> bool:
        """Stop reading keys that hold something else than a stream (another
        program's data under the same name); log each. ``False`` if none does."""
        replies = await self.connections.execute(*[("TYPE", k) for k in keys])
        types = [text(kind) for kind in raise_errors(replies)]
        foreign = [(key, kind) for key, kind in zip(keys, types, strict=True)]
        foreign = [(key, kind) for key, kind in foreign if kind not in ("stream", "none")]
        for key, kind in foreign:
            self._streams.pop(key, None)
            log_foreign_key(self.alias, self._channels.pop(key, key), key, kind)
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
            read = _entries(entries)
            for entry_id, payload in read:
                # Skip what a re-subscription (with a later start) already covers.
                if order(entry_id) > after:
                    events.append(RawEvent(channel, payload, entry_id))
                    last = entry_id
            self._streams[key] = last
            if len(read) >= XREAD_COUNT:
                self._dirty.add(key)  # there may be more
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


def log_foreign_key(alias: str, channel: str, key: str, kind: str) -> None:
    """Log, once per key, that a followed stream key holds something else."""
    logger.error(
        "broadcast backend %r cannot read channel %r: Redis key %r holds a %s, not a "
        "stream; set a KEY_PREFIX to keep broadcast streams apart from other data",
        alias,
        channel,
        key,
        kind,
    )


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
