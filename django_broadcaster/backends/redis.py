"""Redis backends on ``redis.asyncio`` (redis-py 5.x to 8.x; hiredis used when installed).

`RedisBackend` uses Redis pub/sub: at-most-once, no history. `RedisStreamBackend`
appends every event to a Redis Stream (``XADD ... MAXLEN ~ N``) and reads them
with a blocking ``XREAD``: event ids are stream ids, so history, ``since=`` and
resuming after a reconnect come from the stream.

Each backend instance (one per event loop, see `django_broadcaster.hub`) holds:

* one command connection for ``PUBLISH``/``XADD`` and other short commands
  (the hub sends one publish or one pipelined batch at a time);
* one reading connection, opened when the first channel is subscribed: the
  pub/sub connection carrying every subscribed channel, or the connection the
  Streams reader keeps its blocking ``XREAD`` on;
* a redis-py pool for history reads, empty until one happens, at most
  ``max_connections`` (10 unless ``CONNECTION_KWARGS`` says otherwise).

The command and reading connections are used directly (``send_command`` and
``read_response``) instead of through ``PubSub.get_message()`` or the client's
``execute_command()``: redis-py 8 wraps every message and command in its retry
and telemetry machinery and, on its default RESP3, pub/sub messages in its
push-notification handling, which measured at twice the cost per message of
redis-py 5 and of the direct path (see docs/backends/redis.rst). These
connections always speak RESP2 (``protocol=2``), so replies have one shape on
every supported redis-py version.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import sys
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from contextlib import suppress
from typing import Any, ClassVar
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import (
    AbstractConnection,
    BlockingConnectionPool,
    Connection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # redis-py depends on async-timeout before Python 3.11.3
    from async_timeout import timeout as _timeout  # type: ignore[import-not-found,no-redef]

from ..exceptions import ConfigError
from ..masking import mask_password, redact
from ..options import is_whole_number
from .base import BackendConfig, BaseBackend, RawEvent, location_error

logger = logging.getLogger("django_broadcaster")

SCHEMES = ("redis", "rediss", "unix")
#: CONNECTION_KWARGS keys this module fixes: it parses RESP2 replies as bytes.
RESERVED_KWARGS = ("decode_responses", "protocol", "connection_pool", "connection_class")
#: Defaults for CONNECTION_KWARGS (readers wait for events without a timeout).
DEFAULT_KWARGS: Mapping[str, Any] = {
    "max_connections": 10,
    "timeout": 5,  # seconds to wait for a free pooled connection
    "socket_timeout": 5,
    "socket_connect_timeout": 5,
}
#: TCP keepalive for the backend's own connections: a peer that vanished without
#: closing the socket is noticed in about 30 s instead of hours.
KEEPALIVE = {
    name: value
    for name, value in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
}
#: The name of the stream entry field carrying the payload.
FIELD = b"data"
#: Entries one XREAD returns per stream at most.
XREAD_COUNT = 100
#: How long one XREAD blocks on the server (ms); the reader re-issues it.
XREAD_BLOCK_MS = 5000
#: The same when CLIENT UNBLOCK is not permitted (ACLs, managed Redis): the
#: reader then notices newly subscribed streams by polling this often.
XREAD_POLL_MS = 100
#: Extra time for an XREAD reply before the connection is taken for dead.
XREAD_GRACE = 5.0


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _RedisBackend(BaseBackend):
    """What both Redis backends share: LOCATION, CONNECTION_KWARGS, the command connection."""

    default_options: ClassVar[Mapping[str, Any]] = {"CONNECTION_KWARGS": {}}
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (
        RedisConnectionError,  # includes AuthenticationError and BusyLoadingError
        RedisTimeoutError,
        asyncio.TimeoutError,
        OSError,
    )

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._kwargs: dict[str, Any] = {
            **DEFAULT_KWARGS,
            # Shows in CLIENT LIST; no spaces allowed there.
            "client_name": "django-broadcaster:" + re.sub(r"[^\w.:-]", "_", self.alias),
            **self.options["CONNECTION_KWARGS"],
            "decode_responses": False,
            "protocol": 2,
        }
        self._kwargs.setdefault("retry", Retry(NoBackoff(), 0))  # the hub retries
        self._command_timeout: float | None = self._kwargs.get("socket_timeout")
        self._pool: BlockingConnectionPool | None = None
        self._client: Redis | None = None
        self._connection: AbstractConnection | None = None
        self._connection_lock = asyncio.Lock()
        self._open = False

    # -- settings ------------------------------------------------------------

    @classmethod
    def check_location(cls, location: str) -> None:
        hint = (
            "e.g. 'redis://127.0.0.1:6379/0', 'rediss://:password@host:6380/0' or "
            "'unix:///path/to/redis.sock?db=0'"
        )
        if not location:
            raise location_error(f"{cls.__name__} needs LOCATION, a Redis URL", hint)
        safe = mask_password(location)
        try:
            scheme = urlsplit(location).scheme
        except ValueError:
            scheme = ""
        if scheme not in SCHEMES:
            raise location_error(
                f"LOCATION {safe!r} of {cls.__name__} must be a redis://, rediss:// or unix:// URL",
                hint,
            )
        try:
            parts = urlsplit(location)
            _ = parts.port  # ValueError when not a number
            db = parts.path.strip("/") if scheme != "unix" else ""
            if db and not db.isdigit():
                raise ValueError(f"the database number must be a whole number, not {db!r}")
            parse_url(location)
        except (ValueError, TypeError) as exc:
            raise location_error(
                f"LOCATION {safe!r} of {cls.__name__} is not a valid Redis URL: "
                f"{redact(str(exc), location)}",
                hint,
            ) from None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        kwargs = options.get("CONNECTION_KWARGS", {})
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise ConfigError(
                "OPTIONS['CONNECTION_KWARGS'] must be a dict of redis-py connection arguments, "
                f"not {type(kwargs).__name__}",
                check_id="django_broadcaster.E006",
            )
        reserved = sorted(set(kwargs) & set(RESERVED_KWARGS))
        if reserved:
            raise ConfigError(
                f"OPTIONS['CONNECTION_KWARGS'] cannot set {', '.join(reserved)}: "
                f"{cls.__name__} sets them itself",
                check_id="django_broadcaster.E006",
            )

    # -- connections -----------------------------------------------------------

    async def connect(self) -> None:
        await self._close_commands()
        self._pool = BlockingConnectionPool.from_url(self.location, **self._kwargs)
        self._client = Redis(connection_pool=self._pool)
        try:
            await self._execute(("PING",))  # opens the command connection
        except BaseException:
            await self._close_commands()
            raise
        self._open = True

    async def _close_commands(self) -> None:
        connection, self._connection = self._connection, None
        await _drop(connection)
        pool, self._pool, self._client = self._pool, None, None
        if pool is not None:
            await _close_pool(pool)

    def _history_client(self) -> Redis:
        if self._client is None:
            raise RedisConnectionError(f"{type(self).__name__} {self.alias!r} is not connected")
        return self._client

    async def _execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send ``commands`` in one round trip on the command connection and return
        their replies in order (an error reply as a `ResponseError` instance).

        Publishing and the other short commands use this one connection of the
        backend's own instead of the client's pool: the hub sends one publish
        (or one batch) at a time, and redis-py's pooled ``execute_command``
        costs several times the work. ``socket_timeout`` bounds the round trip.
        """
        async with self._connection_lock:
            connection = self._connection
            if connection is None:
                connection = self._dedicated_connection()
                try:
                    await connection.connect()  # type: ignore[no-untyped-call]
                except BaseException:
                    await _drop(connection)
                    raise
                self._connection = connection
            replies: list[Any] = []
            try:
                async with _timeout(self._command_timeout):
                    if len(commands) == 1:
                        await connection.send_command(*commands[0])
                    else:
                        await connection.send_packed_command(connection.pack_commands(commands))
                    for _ in commands:
                        try:
                            replies.append(
                                await connection.read_response(disconnect_on_error=False)
                            )
                        except ResponseError as exc:
                            replies.append(exc)
            except BaseException as exc:
                # Replies may still be due on this connection: never reuse it.
                if self._connection is connection:
                    self._connection = None
                await _drop(connection)
                if isinstance(exc, asyncio.TimeoutError):
                    raise RedisTimeoutError(
                        f"no reply from Redis within {self._command_timeout}s"
                    ) from None
                raise
            return replies

    def _dedicated_connection(self) -> AbstractConnection:
        """A connection of the backend's own, outside the pool: redis-py applies no
        timeouts to it (the backend does), and it has TCP keepalive."""
        if self._pool is None:
            raise RedisConnectionError(f"{type(self).__name__} {self.alias!r} is not connected")
        kwargs: dict[str, Any] = {
            **self._pool.connection_kwargs,
            "socket_timeout": None,
            # A health-check PING would read replies meant for the reader.
            "health_check_interval": 0,
        }
        connection_class: type[AbstractConnection] = self._pool.connection_class
        if issubclass(connection_class, Connection) and "socket_keepalive" not in kwargs:
            kwargs.update(
                socket_keepalive=True,
                socket_keepalive_options={
                    getattr(socket, name): value for name, value in KEEPALIVE.items()
                },
            )
        return connection_class(**kwargs)


async def _command(client: Redis, *args: Any) -> Any:
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def _raise_errors(replies: list[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def _close_pool(pool: BlockingConnectionPool) -> None:
    # Bounded: redis-py may wait for a socket to finish closing while another
    # task still reads from it.
    with suppress(Exception):
        await asyncio.wait_for(pool.disconnect(), 1.0)


async def _drop(connection: AbstractConnection | None) -> None:
    if connection is not None:
        with suppress(Exception):
            await connection.disconnect(nowait=True)


class _Closed(RedisConnectionError):
    """The backend was closed (or its connection failed) while this waited."""


# ---------------------------------------------------------------------------
# pub/sub


class _PubSubLink:
    """The pub/sub connection and who is reading it.

    Replies to SUBSCRIBE/UNSUBSCRIBE arrive on the same stream as messages, so
    exactly one task reads at a time: the reader's `receive`, or a `subscribe`
    waiting for its confirmations while nobody else reads.
    """

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.failed: BaseException | None = None
        self.reading = False
        self.read_done: asyncio.Future[None] | None = None
        # Per command sent, in order: [confirmations still due, future or None].
        self.expected: deque[list[Any]] = deque()
        self.send_lock = asyncio.Lock()

    def fail(self, exc: BaseException) -> None:
        if self.failed is None:
            self.failed = exc
        expected, self.expected = self.expected, deque()
        for _, future in expected:
            if future is not None and not future.done():
                future.set_exception(_Closed(str(exc)))


class RedisBackend(_RedisBackend):
    """Redis pub/sub: one connection carries every channel; no history (at-most-once)."""

    supports_history = False

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._link: _PubSubLink | None = None
        self._names: dict[bytes, str] = {}  # subscribed wire names -> channel names
        self._inbox: deque[RawEvent] = deque()
        self._idle: asyncio.Future[None] | None = None
        self._link_lock = asyncio.Lock()

    async def connect(self) -> None:
        await self._drop_link()
        await super().connect()

    async def close(self) -> None:
        self._open = False
        await self._drop_link()
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():
            idle.set_exception(_Closed(f"{self.alias!r} was closed"))
        await self._close_commands()

    async def _drop_link(self) -> None:
        link, self._link = self._link, None
        self._names.clear()
        if link is not None:
            link.fail(_Closed(f"{self.alias!r} was closed"))
            await _drop(link.connection)

    async def _ensure_link(self) -> _PubSubLink:
        async with self._link_lock:
            if self._link is not None:
                return self._link
            connection = self._dedicated_connection()
            try:
                await connection.connect()  # type: ignore[no-untyped-call]
                if not self._open:
                    raise _Closed(f"{self.alias!r} was closed")
            except BaseException:
                await _drop(connection)
                raise
            self._link = link = _PubSubLink(connection)
            idle, self._idle = self._idle, None
            if idle is not None and not idle.done():
                idle.set_result(None)
            return link

    async def publish(self, channel: str, payload: bytes) -> str | None:
        _raise_errors(await self._execute(("PUBLISH", self.wire_name(channel), payload)))
        return None

    async def publish_many(self, events: Sequence[tuple[str, bytes]]) -> list[str | None]:
        commands = [("PUBLISH", self.wire_name(channel), payload) for channel, payload in events]
        _raise_errors(await self._execute(*commands))
        return [None] * len(events)

    async def subscribe(self, positions: Mapping[str, str | None]) -> Mapping[str, str]:
        names = {self.wire_name(channel).encode(): channel for channel in positions}
        if not names:
            return {}
        link = await self._ensure_link()
        self._names.update(names)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._send(link, "SUBSCRIBE", list(names), future)
        await self._until(link, future)
        return {}

    async def unsubscribe(self, channels: Collection[str]) -> None:
        names = [self.wire_name(channel).encode() for channel in channels]
        for name in names:
            self._names.pop(name, None)
        link = self._link
        if names and link is not None and link.failed is None:
            # Not awaited: messages still in flight are dropped by name.
            await self._send(link, "UNSUBSCRIBE", names, None)

    async def _send(
        self,
        link: _PubSubLink,
        command: str,
        names: list[bytes],
        future: asyncio.Future[None] | None,
    ) -> None:
        async with link.send_lock:
            if link.failed is not None:
                raise _Closed(str(link.failed))
            link.expected.append([len(names), future])
            try:
                await link.connection.send_command(command, *names)
            except BaseException as exc:
                link.fail(exc)
                raise

    async def receive(self) -> Sequence[RawEvent]:
        inbox = self._inbox
        while not inbox:
            link = self._link
            if link is None:
                if not self._open:
                    raise _Closed(f"{self.alias!r} is closed")
                # Nothing subscribed yet: wait for the first subscribe() (or close()).
                if self._idle is None:
                    self._idle = asyncio.get_running_loop().create_future()
                await self._idle
            elif link.reading:
                await self._read_finished(link)
            else:
                await self._read(link)
        events = list(inbox)
        inbox.clear()
        return events

    async def _until(self, link: _PubSubLink, future: asyncio.Future[None]) -> None:
        """Wait for ``future``, reading the connection while nobody else does."""
        while not future.done():
            if link.reading:
                done = link.read_done
                if done is None:
                    done = link.read_done = asyncio.get_running_loop().create_future()
                await asyncio.wait((future, done), return_when=asyncio.FIRST_COMPLETED)
            else:
                await self._read(link)
        future.result()

    @staticmethod
    async def _read_finished(link: _PubSubLink) -> None:
        done = link.read_done
        if done is None:
            done = link.read_done = asyncio.get_running_loop().create_future()
        await done

    async def _read(self, link: _PubSubLink) -> None:
        """Read and handle one reply; the connection failing fails the link."""
        if link.failed is not None:
            raise _Closed(str(link.failed))
        link.reading = True
        try:
            reply = await link.connection.read_response(disconnect_on_error=False)
        except ResponseError as exc:
            # An error reply to SUBSCRIBE (an ACL refusing a channel, say).
            self._confirmed(link, exc)
            return
        except asyncio.CancelledError:
            raise  # the parsers resume a partly read reply on the next read
        except BaseException as exc:
            link.fail(exc)
            raise
        finally:
            link.reading = False
            done, link.read_done = link.read_done, None
            if done is not None and not done.done():
                done.set_result(None)
        if not isinstance(reply, list) or not reply:
            return
        kind = reply[0]
        if kind == b"message":
            channel = self._names.get(reply[1])
            if channel is not None:
                self._inbox.append(RawEvent(channel, reply[2], None))
        elif kind == b"subscribe" or kind == b"unsubscribe":
            self._confirmed(link, None)

    @staticmethod
    def _confirmed(link: _PubSubLink, error: BaseException | None) -> None:
        if not link.expected:
            return
        entry = link.expected[0]
        entry[0] -= 1
        if entry[0] <= 0 or error is not None:
            link.expected.popleft()
            future = entry[1]
            if future is not None and not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)


# ---------------------------------------------------------------------------
# Streams


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
        entries.append((_text(entry_id), payload if isinstance(payload, bytes) else b""))
    return entries


class RedisStreamBackend(_RedisBackend):
    """Redis Streams: history and resume from stream ids, bounded by ``MAXLEN``."""

    supports_history = True
    default_options: ClassVar[Mapping[str, Any]] = {"CONNECTION_KWARGS": {}, "MAXLEN": 10000}

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._maxlen: int = self.options["MAXLEN"]
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
            raise ConfigError(
                f"OPTIONS['MAXLEN'] must be a whole number >= 1 (events kept per stream), "
                f"not {maxlen!r}",
                check_id="django_broadcaster.E006",
            )

    # -- connection ----------------------------------------------------------

    async def connect(self) -> None:
        await self._drop_reader()
        await super().connect()

    async def close(self) -> None:
        self._open = False
        await self._drop_reader()
        self._streams.clear()
        self._channels.clear()
        idle, self._idle = self._idle, None
        if idle is not None and not idle.done():
            idle.set_exception(_Closed(f"{self.alias!r} was closed"))
        await self._close_commands()

    async def _drop_reader(self) -> None:
        reader, self._reader, self._reader_id = self._reader, None, None
        await _drop(reader)

    async def _open_reader(self) -> AbstractConnection:
        connection = self._dedicated_connection()
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
            await connection.send_command("CLIENT", "ID")
            reply = await connection.read_response(timeout=XREAD_GRACE)
            if reply is None:
                raise RedisTimeoutError(f"no reply to CLIENT ID within {XREAD_GRACE:.0f}s")
            reader_id = int(reply)
            if self._can_unblock is None:
                await self._probe_unblock(reader_id)
        except BaseException:
            await _drop(connection)
            raise
        if not self._open:
            await _drop(connection)
            raise _Closed(f"{self.alias!r} was closed")
        self._reader, self._reader_id = connection, reader_id
        return connection

    async def _probe_unblock(self, reader_id: int) -> None:
        try:
            _raise_errors(await self._execute(("CLIENT", "UNBLOCK", reader_id)))
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

    def _xadd_args(self, channel: str, payload: bytes) -> tuple[Any, ...]:
        key = self.wire_name(channel)
        return ("XADD", key, "MAXLEN", "~", self._maxlen, "*", FIELD, payload)

    async def publish(self, channel: str, payload: bytes) -> str | None:
        (event_id,) = _raise_errors(await self._execute(self._xadd_args(channel, payload)))
        return _text(event_id)

    async def publish_many(self, events: Sequence[tuple[str, bytes]]) -> list[str | None]:
        commands = [self._xadd_args(channel, payload) for channel, payload in events]
        return [_text(event_id) for event_id in _raise_errors(await self._execute(*commands))]

    async def subscribe(self, positions: Mapping[str, str | None]) -> Mapping[str, str]:
        if not self._open:
            raise _Closed(f"{self.alias!r} is closed")
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
            replies = await self._execute(
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
            (unblocked,) = await self._execute(("CLIENT", "UNBLOCK", self._reader_id))
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
            if not self._open:
                raise _Closed(f"{self.alias!r} is closed")
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
                    await self._drop_reader()
                else:
                    await _drop(reader)
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
        types = [
            _text(kind) for kind in _raise_errors(await self._execute(*[("TYPE", k) for k in keys]))
        ]
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
            key = _text(key_bytes)
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
        key = self.wire_name(channel)
        start = "-" if since is None else _after(self.id_order(since))
        client = self._history_client()
        if limit is not None:
            if limit <= 0:
                return []
            reply = await _command(client, "XREVRANGE", key, "+", start, "COUNT", limit)
            entries = _entries(reply)[::-1]
        else:
            entries = []
            while True:  # in pages, so one reply never holds a whole long stream
                page = _entries(await _command(client, "XRANGE", key, start, "+", "COUNT", 1000))
                entries.extend(page)
                if len(page) < 1000:
                    break
                start = _after(self.id_order(page[-1][0]))
        return [RawEvent(channel, payload, entry_id) for entry_id, payload in entries]


def _after(order: tuple[int, ...]) -> str:
    """The smallest stream id after the one whose order key is ``order`` ("N" is
    "N-0"): an exclusive XRANGE start that works before Redis 6.2 too."""
    ms, seq = order[0], order[1] if len(order) > 1 else 0
    if seq >= 2**64 - 1:
        return f"{ms + 1}-0"
    return f"{ms}-{seq + 1}"
