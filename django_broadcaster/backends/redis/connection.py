"""What both Redis backends share: their settings and their connections.

`RedisBackendBase` checks ``LOCATION``, ``CONNECTION_KWARGS`` and the Sentinel
options and builds the redis-py connection arguments; `RedisConnections` holds
one backend instance's connections, to the server ``LOCATION`` names or to the
master the sentinels name. None of them is repaired here: a call whose
connection fails raises one of ``connection_errors``, and the hub closes and
reconnects the backend (asking the sentinels again).
"""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.core.checks import CheckMessage, Error
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
    from asyncio import timeout as timeout  # re-exported: streams.py uses it too
else:  # redis-py depends on async-timeout before Python 3.11.3
    from async_timeout import timeout as timeout  # type: ignore[import-not-found,no-redef]

from ... import loops
from ...exceptions import ConfigError
from ...masking import mask_password, redact
from ...options import option_error
from ..base import BackendConfig, BaseBackend, location_error
from . import deployment, sentinel
from .wire import round_trip

SCHEMES = ("redis", "rediss", "unix")
#: CONNECTION_KWARGS keys the backends fix: they parse RESP2 replies as bytes.
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


class ConnectionClosed(RedisConnectionError):
    """The backend is closed, its connection was dropped, or it was closed while
    this call waited."""


async def discard(connection: AbstractConnection | None) -> None:
    """Close ``connection`` without waiting for the peer; never raises."""
    if connection is not None:
        with suppress(Exception):
            await connection.disconnect(nowait=True)


class RedisConnections:
    """The connections of one backend instance:

    * the command connection, opened by `connect`, carries `execute` (publishes
      and other short commands: the hub sends one publish or one pipelined
      batch at a time);
    * `open_dedicated` opens a connection of the caller's own, for a reader;
    * a redis-py pool serves `pooled_command` (history reads), empty until one
      happens, at most ``max_connections``.

    With ``sentinels``, ``location`` names the service (``redis://mymaster/0``)
    and each `connect` asks them for the master's address first. With
    ``address``, the connections go to that ``(host, port)`` with the rest of
    ``location``'s settings (a Redis Cluster node, see ``cluster``).
    """

    def __init__(
        self,
        owner: str,
        location: str,
        kwargs: Mapping[str, Any],
        sentinels: Sequence[tuple[str, int]] | None = None,
        sentinel_kwargs: Mapping[str, Any] | None = None,
        address: tuple[str, int] | None = None,
    ) -> None:
        self._owner = owner  # for messages: "RedisBackend 'default'"
        self._location = location
        self._kwargs = dict(kwargs)
        self._address = address
        self._sentinels = sentinels
        self._sentinel_kwargs = dict(sentinel_kwargs or {})
        self._command_timeout: float | None = self._kwargs.get("socket_timeout")
        self._pool: BlockingConnectionPool | None = None
        self._client: Redis | None = None
        self._connection: AbstractConnection | None = None
        self._missing = "is not connected"  # why there is no command connection
        self._reopen = False  # the last round trip was cancelled: open a new one
        self._lock = asyncio.Lock()
        self._open = False

    @property
    def is_open(self) -> bool:
        """Between a successful `connect` and `close`."""
        return self._open

    async def connect(self) -> None:
        """Create the pool and open the command connection (to the master the
        sentinels name, when there are sentinels)."""
        try:
            self._pool = await self._new_pool()
            self._client = Redis(connection_pool=self._pool)
            self._connection = await self.open_dedicated()
            if self._sentinels is None:
                await self.execute(("PING",))
            else:
                await self._check_master()
        except loops.ERRORS_AND_CANCELLATION:
            await self.close()
            raise
        self._open = True

    async def _new_pool(self) -> BlockingConnectionPool:
        if self._sentinels is None and self._address is None:
            return BlockingConnectionPool.from_url(self._location, **self._kwargs)
        options = parse_url(self._location)
        if self._sentinels is not None:
            host, port = await sentinel.master_address(
                self._sentinels, options["host"], self._sentinel_kwargs
            )
        else:
            assert self._address is not None
            host, port = self._address
        return BlockingConnectionPool(**{**self._kwargs, **options, "host": host, "port": port})

    async def _check_master(self) -> None:
        """Refuse a server the sentinels still name although it became a replica
        (a failover under way): the hub retries until they name the new master.
        Where ACLs forbid ``ROLE`` the sentinels are trusted."""
        (role,) = await self.execute(("ROLE",))
        if not isinstance(role, ResponseError) and role[0] != b"master":
            assert self._pool is not None
            where = "{host}:{port}".format(**self._pool.connection_kwargs)
            raise ConnectionClosed(
                f"{self._owner}: {where}, named master by the sentinels, is a {role[0].decode()}"
            )

    async def close(self, *readers: AbstractConnection | None) -> None:
        """Close ``readers`` (dedicated connections of the caller's), which ends a
        read blocked on them at once, then the command connection and the pool."""
        self._open = False
        connection, self._connection = self._connection, None
        self._missing = "is closed"
        self._reopen = False
        pool, self._pool, self._client = self._pool, None, None
        for reader in readers:
            await discard(reader)
        await discard(connection)
        if pool is not None:
            # Bounded: redis-py may wait for a socket to finish closing while
            # another task still reads from it.
            with suppress(Exception):
                await asyncio.wait_for(pool.disconnect(), 1.0)

    async def execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send ``commands`` in one round trip on the command connection and return
        their replies in order (an error reply as a `ResponseError` instance).

        This connection of the backend's own replaces the client's pool: redis-py's
        pooled ``execute_command`` costs several times the work. ``socket_timeout``
        bounds the round trip. A round trip that fails or is cancelled may leave
        replies due on the connection, so it is dropped, never reused. After a
        failure calls raise `ConnectionClosed` until the hub reconnects; after a
        cancellation (a caller that stopped waiting, not a broken link) the next
        call opens a new command connection by itself, so a cancelled publish
        never costs the subscriptions a reconnect.
        """
        async with self._lock:
            connection = self._connection
            if connection is None:
                if not self._reopen:
                    raise ConnectionClosed(f"{self._owner} {self._missing}")
                # Cleared once open: a caller cancelled while opening leaves it to the next.
                connection = self._connection = await self.open_dedicated()
                self._reopen = False
            try:
                async with timeout(self._command_timeout):
                    return await round_trip(connection, commands)
            except loops.ERRORS_AND_CANCELLATION as exc:
                if self._connection is connection:
                    self._connection = None
                    self._reopen = isinstance(exc, asyncio.CancelledError)
                    self._missing = f"lost its command connection ({type(exc).__name__})"
                await discard(connection)
                if isinstance(exc, asyncio.TimeoutError):
                    raise RedisTimeoutError(
                        f"no reply from Redis within {self._command_timeout}s"
                    ) from None
                raise

    async def pooled_command(self, *args: Any) -> Any:
        """Run one command on a pooled connection (a history read, which may be
        long and runs alongside publishes)."""
        if self._client is None:
            raise ConnectionClosed(f"{self._owner} is not connected")
        return await self._client.execute_command(*args)  # type: ignore[no-untyped-call]

    async def open_dedicated(self) -> AbstractConnection:
        """Open a connection outside the pool, for the caller alone: redis-py
        applies no timeouts to it (the caller does), and it has TCP keepalive."""
        if self._pool is None:
            raise ConnectionClosed(f"{self._owner} {self._missing}")
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
        connection = connection_class(**kwargs)
        try:
            await connection.connect()  # type: ignore[no-untyped-call]
        except loops.ERRORS_AND_CANCELLATION:
            await discard(connection)
            raise
        return connection


class RedisBackendBase(BaseBackend):
    """The base of both Redis backends: ``LOCATION`` and ``CONNECTION_KWARGS``
    checks, and `connections`, opened by `connect`."""

    default_options: ClassVar[Mapping[str, Any]] = {
        "CONNECTION_KWARGS": {},
        "SENTINELS": None,
        "SENTINEL_KWARGS": {},
        "CLUSTER": False,
    }
    #: The subclass serving this backend on a Redis Cluster (``OPTIONS["CLUSTER"]``):
    #: the subclass naming this class its `cluster_of` registers itself here.
    cluster_variant: ClassVar[type[RedisBackendBase]]
    #: On a cluster variant: the backend class it serves a cluster for.
    cluster_of: ClassVar[type[RedisBackendBase]]
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (
        RedisConnectionError,  # includes AuthenticationError and BusyLoadingError
        RedisTimeoutError,
        asyncio.TimeoutError,
        OSError,
    )

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        kwargs: dict[str, Any] = {
            **DEFAULT_KWARGS,
            # Shows in CLIENT LIST; no spaces allowed there.
            "client_name": "django-broadcaster:" + re.sub(r"[^\w.:-]", "_", self.alias),
            **self.options["CONNECTION_KWARGS"],
            "decode_responses": False,
            "protocol": 2,
        }
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))  # the hub retries
        deployment.check_location_for(self.location, self.options, type(self).__name__)
        #: This backend instance's connections to Redis.
        self.connections = self.new_connections(f"{type(self).__name__} {self.alias!r}", kwargs)

    def __new__(cls, config: BackendConfig) -> RedisBackendBase:
        # With OPTIONS["CLUSTER"], the class registered as this one's cluster variant.
        variant = cls.__dict__.get("cluster_variant")
        if config.options.get("CLUSTER") and variant is not None:
            cls = variant
        return super().__new__(cls)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "cluster_of" in cls.__dict__:
            cls.cluster_of.cluster_variant = cls

    def new_connections(self, owner: str, kwargs: Mapping[str, Any]) -> RedisConnections:
        """The connections of this instance: to ``LOCATION``, or to the master the
        sentinels name (a cluster variant returns its cluster connections)."""
        sentinels = self.options["SENTINELS"]
        sentinel_kwargs = {
            "socket_timeout": kwargs["socket_timeout"],
            "socket_connect_timeout": kwargs["socket_connect_timeout"],
            "retry": kwargs["retry"],
            **self.options["SENTINEL_KWARGS"],
            "decode_responses": False,
            "protocol": 2,
        }
        return RedisConnections(owner, self.location, kwargs, sentinels, sentinel_kwargs)

    @classmethod
    def check_location(cls, location: str) -> None:
        hint = (
            "e.g. 'redis://127.0.0.1:6379/0', 'rediss://:password@host:6380/0' or "
            "'unix:///path/to/redis.sock?db=0'"
        )
        if not location:
            raise location_error(f"{cls.__name__} needs LOCATION, a Redis URL", hint)
        if len(location.split()) > 1:  # a list of URLs (a cluster's seeds): each one
            for url in location.split():
                cls.check_location(url)
            return
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
        # The values may hold secrets (a password, TLS keys): errors show only
        # the type and the keys.
        kwargs = options.get("CONNECTION_KWARGS", {})
        if not isinstance(kwargs, dict):
            raise option_error(
                "CONNECTION_KWARGS", "a dict of redis-py connection arguments", type(kwargs)
            )
        for key in kwargs:
            if not isinstance(key, str):
                raise option_error("CONNECTION_KWARGS", "keyed by argument names (str)", key)
        reserved = sorted(set(kwargs) & set(RESERVED_KWARGS))
        if reserved:
            raise option_error(
                "CONNECTION_KWARGS",
                f"a dict without the keys {', '.join(RESERVED_KWARGS)}",
                reserved,
                hint=f"{cls.__name__} sets them itself: CONNECTION_KWARGS cannot set them",
            )
        deployment.check_sentinels(options)
        deployment.check_cluster(options, "cluster_variant" in cls.__dict__, cls.__name__)

    @classmethod
    def deployment_checks(
        cls, config: BackendConfig, databases: Sequence[str] | None
    ) -> list[CheckMessage]:
        """``E007`` when ``LOCATION`` does not suit the options: no service named with
        ``SENTINELS``, no cluster node with ``CLUSTER``."""
        try:
            deployment.check_location_for(config.location, config.options, cls.__name__)
        except ConfigError as exc:
            return [
                Error(
                    f"BROADCAST_BACKENDS[{config.alias!r}]: {exc.message}",
                    hint=exc.hint,
                    id=exc.check_id,
                )
            ]
        return []

    async def connect(self) -> None:
        await self.connections.connect()
