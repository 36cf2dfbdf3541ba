"""PostgreSQL backend: events stored in a table, ``LISTEN``/``NOTIFY`` as the wake-up.

Each event is one row of ``django_broadcaster_event`` (created by
``manage.py migrate``); its ``bigserial`` id is the event id. Publishing
inserts the row and calls ``pg_notify`` in the same statement. The
notification carries the event itself when the *encoded* notification stays
well under PostgreSQL's 8000-byte limit, otherwise only the id, and the
listener reads the row. Every broadcast channel has its own ``NOTIFY``
channel: a name of at most 63 bytes derived from a hash of the channel name
(``KEY_PREFIX`` included), so long names work and never collide.

Per channel, publishers take a transaction-scoped advisory lock before the
insert, so ids are assigned *and committed* in the same order: a subscriber
that has seen id N of a channel has seen every earlier one, and resuming
"after N" (after a reconnect, or with ``since=``) neither loses nor repeats.

One connection publishes and reads history; a second one, opened on the first
subscription, ``LISTEN``s. See ``docs/backends/postgres.rst``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import logging
import os
import re
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from importlib import import_module
from types import FrameType
from typing import Any, ClassVar
from urllib.parse import urlsplit

import psycopg
from django.core.checks import CheckMessage, Error
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from ..exceptions import ConfigError
from ..masking import mask_password, redact
from ..options import is_seconds, is_whole_number
from .base import BackendConfig, BaseBackend, RawEvent, location_error

logger = logging.getLogger("django_broadcaster")

Connection = psycopg.AsyncConnection[TupleRow]

#: The table of ``django_broadcaster.models.HistoryEvent`` (not imported: this
#: module may be imported before the app registry is ready).
HISTORY_TABLE = "django_broadcaster_event"
#: ``channel`` column width; longer ``KEY_PREFIX`` values are shortened with a hash.
CHANNEL_COLUMN = 255
#: PostgreSQL rejects notification payloads of 8000 bytes or more (server encoding).
NOTIFY_LIMIT = 8000
#: Events whose encoded notification would exceed this travel as an id only.
INLINE_LIMIT = 7000
#: "@" + up to 19 digits of id + ":t" / ":b".
_ENVELOPE = 22
#: First key of the per-channel advisory locks ("BRDC").
LOCK_CLASS = 0x42524443
#: Channels LISTENed (and locked) per transaction; keeps lock-table use small.
LISTEN_CHUNK = 100
#: Trim history after this many events published by one backend instance ...
PRUNE_EVERY = 1000
#: ... or after this many seconds, whichever comes first.
PRUNE_INTERVAL = 60.0
#: Most rows one prune deletes for age (the next prune takes the rest).
PRUNE_BATCH = 10_000
MAX_ID = 2**63 - 1
#: How long close() lets an in-flight publish finish before cutting it off.
PUBLISH_GRACE = 1.0

_URL_SCHEMES = ("postgresql", "postgres")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_.:-]")
_DEFAULT_PARAMS: Mapping[str, Any] = {
    "application_name": "django-broadcaster",
    "client_encoding": "UTF8",
    "connect_timeout": 5,
    # A LISTEN connection is idle for long stretches: let TCP notice a dead peer.
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


@dataclass(frozen=True)
class _Names:
    wire: str  # stored in the table's channel column
    notify: str  # the NOTIFY channel, at most 63 bytes
    key: int  # second key of the channel's advisory lock


@functools.lru_cache(maxsize=8192)
def _names(prefix: str, channel: str) -> _Names:
    wire = f"{prefix}:{channel}" if prefix else channel
    digest = hashlib.blake2b(wire.encode(), digest_size=16).digest()
    readable = _NOT_NAME.sub("", wire)[-30:]
    return _Names(
        wire, f"{readable}#{digest.hex()}", int.from_bytes(digest[:4], "big", signed=True)
    )


def _short_prefix(prefix: str) -> str:
    """``prefix``, shortened with a hash when ``prefix:<200 chars>`` would not fit the column."""
    room = CHANNEL_COLUMN - 201
    if len(prefix) <= room:
        return prefix
    digest = hashlib.blake2b(prefix.encode(), digest_size=8).hexdigest()
    return f"{prefix[: room - 17]}~{digest}"


def _is_url(location: str) -> bool:
    return "://" in location or location.split(":", 1)[0] in _URL_SCHEMES


def _table() -> sql.Identifier:
    return sql.Identifier(HISTORY_TABLE)


def _age_filter(max_age: float | None, column: str = "created") -> sql.Composable:
    if max_age is None:
        return sql.SQL("")
    return sql.SQL("AND {} >= now() - make_interval(secs => {})").format(
        sql.Identifier(column), sql.Literal(float(max_age))
    )


class PostgresBackend(BaseBackend):
    """PostgreSQL via psycopg 3: history table plus ``LISTEN``/``NOTIFY``.

    ``LOCATION`` is a ``DATABASES`` alias (empty: ``"default"``) or a
    ``postgresql://`` URL. ``OPTIONS``: ``HISTORY_SIZE`` (events kept per
    channel) and ``HISTORY_MAX_AGE`` (seconds); either may be ``None``.
    """

    supports_history = True
    default_options: ClassVar[Mapping[str, Any]] = {
        "HISTORY_SIZE": 1000,
        "HISTORY_MAX_AGE": 86400,
        "SYNCHRONOUS_COMMIT": True,
    }
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (
        psycopg.OperationalError,
        OSError,
    )

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._prefix = _short_prefix(self.key_prefix)
        self._size: int | None = self.options["HISTORY_SIZE"]
        self._max_age: float | None = self.options["HISTORY_MAX_AGE"]
        self._synchronous: bool = self.options["SYNCHRONOUS_COMMIT"]
        self._secrets: list[str] = []
        self._closed = False
        # Bumped by close(): a connection opened across it is discarded.
        self._epoch = 0
        self._opening = asyncio.Lock()
        self._utf8 = False
        self._pub: Connection | None = None
        self._listen: Connection | None = None
        # Listening state: channel -> names, NOTIFY name -> channel, and per
        # channel the highest id handed out (or the id it started from).
        self._listening: dict[str, _Names] = {}
        self._by_notify: dict[str, str] = {}
        self._last: dict[str, int] = {}
        self._inbox: deque[RawEvent] = deque()
        # receive() waits in a task that subscribe()/unsubscribe()/close() cancel
        # to get the LISTEN connection; _io keeps their statements apart.
        self._io = asyncio.Lock()
        self._busy = 0
        self._changed = asyncio.Event()
        self._waiting: asyncio.Future[list[psycopg.Notify]] | None = None
        # Retention is applied every PRUNE_EVERY events / PRUNE_INTERVAL seconds.
        self._unpruned = 0
        self._prune_channels: set[str] = set()
        self._pruned_at: float | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._build_statements()

    # -- settings ------------------------------------------------------------

    @classmethod
    def check_location(cls, location: str) -> None:
        hint = (
            "use a DATABASES alias of a PostgreSQL database (e.g. 'default'), or a URL "
            "such as postgresql://user:password@host:5432/dbname"
        )
        if _is_url(location):
            shown = mask_password(location)
            try:
                scheme = urlsplit(location).scheme
            except ValueError:
                raise location_error(f"LOCATION {shown} is not a valid URL", hint) from None
            if scheme not in _URL_SCHEMES:
                raise location_error(
                    f"LOCATION {shown} is not a PostgreSQL URL (scheme {scheme!r})", hint
                )
            try:
                conninfo_to_dict(location)
            except psycopg.Error as exc:
                raise location_error(
                    f"LOCATION {shown} cannot be parsed: {redact(str(exc), location)}", hint
                ) from None
            return
        from django.conf import settings
        from django.db import DEFAULT_DB_ALIAS

        alias = location or DEFAULT_DB_ALIAS
        if alias not in settings.DATABASES:
            known = ", ".join(map(repr, settings.DATABASES)) or "none"
            raise location_error(
                f"LOCATION {alias!r} is neither a DATABASES alias (configured: {known}) "
                "nor a postgresql:// URL",
                hint,
            )
        engine = settings.DATABASES[alias].get("ENGINE", "")
        try:
            vendor = import_module(f"{engine}.base").DatabaseWrapper.vendor
        except Exception:
            vendor = None
        if vendor != "postgresql":
            raise location_error(
                f"LOCATION {alias!r} is a DATABASES alias whose ENGINE {engine!r} is not "
                "PostgreSQL",
                hint,
            )

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        size, age = options.get("HISTORY_SIZE"), options.get("HISTORY_MAX_AGE")
        if size is not None and not is_whole_number(size, 1):
            raise ConfigError(
                f"OPTIONS['HISTORY_SIZE'] must be a whole number >= 1 or None, not {size!r}",
                check_id="django_broadcaster.E006",
            )
        if age is not None and not is_seconds(age):
            raise ConfigError(
                f"OPTIONS['HISTORY_MAX_AGE'] must be a number of seconds > 0 or None, not {age!r}",
                check_id="django_broadcaster.E006",
            )
        synchronous = options.get("SYNCHRONOUS_COMMIT", True)
        if not isinstance(synchronous, bool):
            raise ConfigError(
                f"OPTIONS['SYNCHRONOUS_COMMIT'] must be True or False, not {synchronous!r}",
                check_id="django_broadcaster.E006",
            )
        if size is None and age is None:
            raise ConfigError(
                "OPTIONS['HISTORY_SIZE'] and OPTIONS['HISTORY_MAX_AGE'] are both None: "
                "the history table would grow forever",
                check_id="django_broadcaster.E006",
                hint="bound the history by count, by age, or both",
            )

    @classmethod
    def deployment_checks(
        cls, config: BackendConfig, databases: Sequence[str] | None
    ) -> list[CheckMessage]:
        """``django_broadcaster.E008`` when the history table is missing.

        Like Django's database checks this queries only when the check run names
        databases (``check --database``, ``migrate``, the test runner): for an
        alias ``LOCATION``, only when that alias is among them.
        """
        if not databases or _running_migrate():
            return []
        if _is_url(config.location):
            exists = _table_exists_at(config.location)
            where = mask_password(config.location)
            hint = (
                "the table is created by `manage.py migrate django_broadcaster` run against "
                "this database: add a DATABASES alias for it and run migrate --database ALIAS "
                "(or use that alias as LOCATION)"
            )
        else:
            from django.db import DEFAULT_DB_ALIAS

            alias = config.location or DEFAULT_DB_ALIAS
            if alias not in databases:
                return []
            exists = _table_exists_in(alias)
            where = f"database {alias!r}"
            hint = f"run `manage.py migrate django_broadcaster --database {alias}`"
        if exists is not False:
            return []
        return [
            Error(
                f"BROADCAST_BACKENDS[{config.alias!r}]: the history table {HISTORY_TABLE!r} of "
                f"PostgresBackend does not exist in {where}",
                hint=hint,
                id="django_broadcaster.E008",
            )
        ]

    # -- names ---------------------------------------------------------------

    def wire_name(self, channel: str) -> str:
        return _names(self._prefix, channel).wire

    def channel_name(self, wire_name: str) -> str:
        return wire_name[len(self._prefix) + 1 :] if self._prefix else wire_name

    def notify_channel(self, channel: str) -> str:
        """The ``NOTIFY`` channel of ``channel`` (at most 63 bytes), e.g. for ``psql``."""
        return _names(self._prefix, channel).notify

    def _names(self, channel: str) -> _Names:
        return _names(self._prefix, channel)

    # -- connections ---------------------------------------------------------

    def _params(self) -> tuple[dict[str, Any], str | None]:
        """psycopg connect arguments, and the role to assume (Django's ``assume_role``)."""
        role = None
        if _is_url(self.location):
            given: dict[str, Any] = conninfo_to_dict(self.location)
        else:
            from django.db import DEFAULT_DB_ALIAS, connections

            wrapper = connections[self.location or DEFAULT_DB_ALIAS]
            options = wrapper.settings_dict.get("OPTIONS", {})
            given = dict(wrapper.get_connection_params())
            for key in ("cursor_factory", "context", "prepare_threshold"):
                given.pop(key, None)
            if "prepare_threshold" in options:
                given["prepare_threshold"] = options["prepare_threshold"]
            role = options.get("assume_role")
        params = {**_DEFAULT_PARAMS, **given}
        if params.get("password"):
            self._secrets = [str(params["password"])]
        return params, role

    def _scrub(self, exc: psycopg.Error) -> psycopg.Error:
        text = str(exc)
        clean = redact(text, self.location)
        for secret in self._secrets:
            clean = clean.replace(secret, "***")
        return exc if clean == text else type(exc)(clean)

    async def _open(self, *settings: str) -> Connection:
        """A new autocommit connection; raises (and closes it) if close() ran meanwhile."""
        epoch = self._epoch
        params, role = self._params()
        try:
            conn = await psycopg.AsyncConnection.connect(autocommit=True, **params)
            try:
                if role:
                    await conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
                for setting in settings:
                    await conn.execute(setting)
            except BaseException:
                await conn.close()
                raise
        except psycopg.Error as exc:
            raise self._scrub(exc) from None
        if epoch != self._epoch or self._closed:
            await conn.close()
            raise psycopg.OperationalError(f"{self!r} was closed while connecting")
        return conn

    async def connect(self) -> None:
        self._closed = False
        await self._open_publisher(replace=True)
        self._pruned_at = asyncio.get_running_loop().time()
        self._changed.set()

    async def _open_publisher(self, replace: bool = False) -> Connection:
        async with self._opening:
            conn = self._pub
            if conn is not None and not conn.closed and not replace:
                return conn  # another task opened it meanwhile
            if conn is not None:
                self._pub = None
                await _shut(conn, PUBLISH_GRACE)
            # Without synchronous commit, publishing stops waiting for the WAL
            # flush; see the docs for what a server crash may then lose.
            settings = () if self._synchronous else ("SET synchronous_commit = off",)
            conn = self._pub = await self._open(*settings)
            self._utf8 = conn.info.parameter_status("server_encoding") == "UTF8"
            return conn

    async def close(self) -> None:
        self._closed = True
        self._epoch += 1
        self._changed.set()
        self._listening.clear()
        self._by_notify.clear()
        self._last.clear()
        listen, pub = self._listen, self._pub
        self._listen = self._pub = None
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.cancel()  # receive() raises promptly
            await asyncio.wait((waiting,))
        # An in-flight publish may finish (cutting it off after COMMIT would make
        # the hub's retry store it twice); reads on the LISTEN connection need not.
        await asyncio.gather(
            *(_shut(conn, grace) for conn, grace in ((listen, 0.0), (pub, PUBLISH_GRACE)) if conn)
        )

    async def _publisher(self) -> Connection:
        conn = self._pub
        if conn is None or conn.closed:
            if self._closed:
                raise psycopg.OperationalError(f"{self!r} is closed")
            conn = await self._open_publisher()
        return conn

    @asynccontextmanager
    async def _errors(self, conn: Connection) -> AsyncIterator[None]:
        """Turn a missing table into a clear error; drop the publishing connection after
        a connection error (psycopg does not always mark a dead socket closed)."""
        try:
            yield
        except psycopg.errors.UndefinedTable as exc:
            raise self._missing_table() from exc
        except psycopg.OperationalError as exc:
            if conn is self._pub:
                self._pub = None
                await _shut(conn, 0.0)
            raise self._scrub(exc) from None

    def _missing_table(self) -> ConfigError:
        alias = self.location if not _is_url(self.location) else mask_password(self.location)
        return ConfigError(
            f"the broadcast history table {HISTORY_TABLE!r} does not exist in the database of "
            f"{self.alias!r} ({alias or 'default'})",
            check_id="django_broadcaster.E008",
            hint="run `manage.py migrate django_broadcaster` against that database",
        )

    # -- publishing ----------------------------------------------------------

    def _build_statements(self) -> None:
        table = _table()
        self._sql_publish = sql.SQL(
            "WITH lock AS MATERIALIZED"
            " (SELECT pg_advisory_xact_lock(%(cls)s::int4, %(key)s::int4)), "
            "row AS (INSERT INTO {table} (channel, payload) "
            "SELECT %(channel)s, %(payload)b FROM lock RETURNING id) "
            "SELECT id, pg_notify(%(notify)s, '@' || id || %(body)s) FROM row"
        ).format(table=table)
        # Locks are taken in key order (no deadlock between batches), rows are
        # inserted in batch order, notifications sent in id order.
        self._sql_publish_many = sql.SQL(
            "WITH lock AS MATERIALIZED ("
            " SELECT count(pg_advisory_xact_lock(%(cls)s::int4, k)) FROM"
            " (SELECT DISTINCT k FROM unnest(%(keys)s::int4[]) AS k ORDER BY k) AS s), "
            "rows AS (INSERT INTO {table} (channel, payload)"
            " SELECT u.channel, u.payload FROM lock,"
            " unnest(%(channels)s::text[], %(payloads)b::bytea[]) WITH ORDINALITY"
            " AS u(channel, payload, n) ORDER BY u.n RETURNING id), "
            "numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM rows) "
            "SELECT x.id, pg_notify(x.notify, '@' || x.id || x.body) FROM"
            " (SELECT numbered.id, b.notify, b.body FROM numbered JOIN"
            " unnest(%(notifies)s::text[], %(bodies)s::text[]) WITH ORDINALITY"
            " AS b(notify, body, n) ON b.n = numbered.n ORDER BY numbered.n) AS x"
        ).format(table=table)
        self._sql_lock = sql.SQL(
            "SELECT count(pg_advisory_xact_lock(%(cls)s::int4, k)) FROM"
            " (SELECT DISTINCT k FROM unnest(%(keys)s::int4[]) AS k ORDER BY k) AS s"
        )
        recent = sql.SQL("{age} ORDER BY id DESC LIMIT %(limit)s").format(
            age=_age_filter(self._max_age)
        )
        self._sql_history = sql.SQL(
            "SELECT id, payload FROM (SELECT id, payload FROM {table}"
            " WHERE channel = %(channel)s AND id > %(after)s {recent}) AS s ORDER BY id"
        ).format(table=table, recent=recent)
        self._sql_replay = sql.SQL(
            "SELECT p.channel, e.id, e.payload FROM unnest(%(channels)s::text[], %(after)s::int8[])"
            " AS p(channel, after) CROSS JOIN LATERAL (SELECT id, payload FROM {table}"
            " WHERE channel = p.channel AND id > p.after {recent}) AS e ORDER BY e.id"
        ).format(table=table, recent=recent)
        self._sql_sequence = sql.SQL(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence(%(table)s, 'id')::regclass)"
        )
        self._sql_baseline = sql.SQL(
            "SELECT p.channel, (SELECT max(id) FROM {table} WHERE channel = p.channel)"
            " FROM unnest(%(channels)s::text[]) AS p(channel)"
        ).format(table=table)
        self._sql_fetch = sql.SQL(
            "SELECT id, channel, payload FROM {table} WHERE id = ANY(%(ids)s::int8[])"
        ).format(table=table)
        self._sql_prune_size = sql.SQL(
            "DELETE FROM {table} AS t USING (SELECT p.channel, (SELECT id FROM {table}"
            " WHERE channel = p.channel ORDER BY id DESC OFFSET %(keep)s LIMIT 1) AS cutoff"
            " FROM unnest(%(channels)s::text[]) AS p(channel)) AS c"
            " WHERE t.channel = c.channel AND t.id <= c.cutoff"
        ).format(table=table)
        # Rows are (nearly) in created order along the primary key: look at the
        # oldest one, and only when it is too old delete among the oldest rows.
        # Both walk the primary key index from its start (a plain "id < cutoff"
        # with the cutoff from a subquery is planned as a sequential scan).
        self._sql_oldest = sql.SQL(
            "SELECT created < now() - make_interval(secs => %(age)s) FROM {table} "
            "ORDER BY id LIMIT 1"
        ).format(table=table)
        self._sql_prune_age = sql.SQL(
            "DELETE FROM {table} WHERE id = ANY(ARRAY(SELECT id FROM (SELECT id, created "
            "FROM {table} ORDER BY id LIMIT %(batch)s) AS oldest "
            "WHERE created < now() - make_interval(secs => %(age)s)))"
        ).format(table=table)

    def _body(self, payload: bytes) -> str:
        """What follows ``@<id>`` in the notification: the event when its *encoded*
        form fits comfortably, else nothing (the listener reads the row)."""
        size = len(payload)
        if size + _ENVELOPE <= INLINE_LIMIT and b"\x00" not in payload:
            try:
                text = payload.decode()
            except UnicodeDecodeError:
                pass
            else:
                # UTF-8 bytes are what the server counts; other server encodings
                # get ASCII only (one byte per character, nothing to convert).
                if self._utf8 or text.isascii():
                    return ":t" + text
        if (size + 2) // 3 * 4 + _ENVELOPE <= INLINE_LIMIT:
            return ":b" + base64.b64encode(payload).decode("ascii")
        return ""

    async def publish(self, channel: str, payload: bytes) -> str | None:
        names = self._names(channel)
        conn = await self._publisher()
        params = {
            "cls": LOCK_CLASS,
            "key": names.key,
            "channel": names.wire,
            "payload": payload,
            "notify": names.notify,
            "body": self._body(payload),
        }
        async with self._errors(conn):
            cursor = await conn.execute(self._sql_publish, params)
            row = await cursor.fetchone()
        assert row is not None
        self._published((names.wire,), 1)
        return str(row[0])

    async def publish_many(self, events: Sequence[tuple[str, bytes]]) -> list[str | None]:
        if len(events) == 1:
            return [await self.publish(*events[0])]
        names = [self._names(channel) for channel, _ in events]
        conn = await self._publisher()
        params = {
            "cls": LOCK_CLASS,
            "keys": sorted({n.key for n in names}),
            "channels": [n.wire for n in names],
            "payloads": [payload for _, payload in events],
            "notifies": [n.notify for n in names],
            "bodies": [self._body(payload) for _, payload in events],
        }
        async with self._errors(conn):
            cursor = await conn.execute(self._sql_publish_many, params)
            rows = await cursor.fetchall()
        if len(rows) != len(events):  # pragma: no cover - the statement returns one row per event
            raise psycopg.DataError(f"published {len(events)} events, got {len(rows)} ids")
        self._published({n.wire for n in names}, len(events))
        return [str(row[0]) for row in rows]

    # -- retention -----------------------------------------------------------

    def _published(self, wires: Collection[str], count: int) -> None:
        self._unpruned += count
        self._prune_channels.update(wires)
        now = asyncio.get_running_loop().time()
        due = self._unpruned >= PRUNE_EVERY or (
            self._pruned_at is not None and now - self._pruned_at >= PRUNE_INTERVAL
        )
        if due and (self._pruner is None or self._pruner.done()):
            self._pruned_at = now
            self._pruner = asyncio.ensure_future(self.prune())

    async def prune(self) -> None:
        """Delete what retention no longer keeps: beyond ``HISTORY_SIZE`` on the channels
        this instance published to since the last prune, and older than ``HISTORY_MAX_AGE``
        on every channel. Runs by itself every so often; reads apply the bounds exactly."""
        channels, self._prune_channels = sorted(self._prune_channels), set()
        self._unpruned = 0
        try:
            conn = await self._publisher()
            async with self._errors(conn):
                if self._size is not None:
                    for start in range(0, len(channels), 1000):
                        await conn.execute(
                            self._sql_prune_size,
                            {"keep": self._size, "channels": channels[start : start + 1000]},
                        )
                if self._max_age is not None:
                    age = {"age": float(self._max_age), "batch": PRUNE_BATCH}
                    cursor = await conn.execute(self._sql_oldest, age)
                    oldest = await cursor.fetchone()
                    if oldest is not None and oldest[0]:
                        await conn.execute(self._sql_prune_age, age)
        except self.connection_errors as exc:
            logger.debug("pruning the history of %r failed: %s", self.alias, exc)
        except Exception:
            logger.exception("pruning the history of %r failed", self.alias)

    # -- history -------------------------------------------------------------

    def _after(self, event_id: str) -> int:
        parts = self.id_order(event_id)
        if len(parts) != 1 or not 0 <= parts[0] <= MAX_ID:
            raise ValueError(
                f"{event_id!r} is not an event id of PostgresBackend: pass an Event.id "
                "this backend returned"
            )
        return parts[0]

    def _limit(self, limit: int | None) -> int | None:
        if self._size is None:
            return limit
        return self._size if limit is None else min(limit, self._size)

    async def history(
        self, channel: str, since: str | None, limit: int | None
    ) -> Sequence[RawEvent]:
        after = 0 if since is None else self._after(since)
        conn = await self._publisher()
        params = {"channel": self.wire_name(channel), "after": after, "limit": self._limit(limit)}
        async with self._errors(conn):
            cursor = conn.cursor(binary=True)
            await cursor.execute(self._sql_history, params)
            rows = await cursor.fetchall()
        return [RawEvent(channel, bytes(payload), str(event_id)) for event_id, payload in rows]

    # -- subscriptions -------------------------------------------------------

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[Connection]:
        """The LISTEN connection (opened on first use), with receive() out of the way."""
        self._busy += 1
        if self._waiting is not None:
            self._waiting.cancel()
        try:
            async with self._io:
                if self._closed:
                    raise psycopg.OperationalError(f"{self!r} is closed")
                if self._listen is None:
                    self._listen = await self._open()
                elif self._listen.closed:
                    raise psycopg.OperationalError("the LISTEN connection was lost")
                yield self._listen
        finally:
            self._busy -= 1
            self._changed.set()

    async def subscribe(self, positions: Mapping[str, str | None]) -> Mapping[str, str]:
        baselines: dict[str, str] = {}
        async with self._exclusive() as conn:
            items = list(positions.items())
            for start in range(0, len(items), LISTEN_CHUNK):
                chunk = items[start : start + LISTEN_CHUNK]
                baselines.update(await self._listen_to(conn, chunk))
        return baselines

    async def _listen_to(
        self,
        conn: Connection,
        items: Sequence[tuple[str, str | None]],
    ) -> dict[str, str]:
        """LISTEN to ``items`` (channel, position); the baselines of new channels."""
        names = {channel: self._names(channel) for channel, _ in items}
        starts = {c: self._after(position) for c, position in items if position is not None}
        fresh = [names[c].wire for c in names if c not in starts]
        by_wire = {n.wire: c for c, n in names.items()}
        # Under the channels' publish locks: every event committed before is
        # visible to the queries below, every later one is notified.
        async with self._errors(conn), conn.transaction():
            await conn.execute(
                self._sql_lock,
                {"cls": LOCK_CLASS, "keys": sorted({n.key for n in names.values()})},
            )
            await conn.execute(
                sql.SQL("; ").join(
                    sql.SQL("LISTEN {}").format(sql.Identifier(n.notify)) for n in names.values()
                )
            )
            if starts:
                await self._check_rewind(conn, starts, names)
            baseline: list[tuple[Any, ...]] = []
            if fresh:
                cursor = await conn.execute(self._sql_baseline, {"channels": fresh})
                baseline = await cursor.fetchall()
            replay: list[tuple[Any, ...]] = []
            if starts:
                cursor = conn.cursor(binary=True)
                await cursor.execute(
                    self._sql_replay,
                    {
                        "channels": [names[c].wire for c in starts],
                        "after": list(starts.values()),
                        "limit": self._size,
                    },
                )
                replay = await cursor.fetchall()
        for channel, channel_names in names.items():
            self._listening[channel] = channel_names
            self._by_notify[channel_names.notify] = channel
        baselines: dict[str, str] = {}
        for wire, top in baseline:
            self._last[by_wire[wire]] = top or 0
            baselines[by_wire[wire]] = str(top or 0)
        self._last.update(starts)
        for wire, event_id, payload in replay:
            self._deliver(by_wire[wire], event_id, bytes(payload))
        return baselines

    async def _check_rewind(
        self, conn: Connection, starts: dict[str, int], names: Mapping[str, _Names]
    ) -> None:
        """Resume points past the id sequence mean the database went back in time (a crash
        that lost WAL, a failover to a lagging replica): new events reuse those ids, so
        resume after what the table still holds instead of skipping them."""
        cursor = await conn.execute(self._sql_sequence, {"table": HISTORY_TABLE})
        row = await cursor.fetchone()
        current = row[0] if row else None
        if current is None:
            return  # never used, or not ours to read: cannot tell
        rewound = [c for c, after in starts.items() if after > current]
        if not rewound:
            return
        logger.warning(
            "the event ids of %r went back from %d to %d (server crash or failover?); "
            "events published just before may be missing from its history",
            self.alias,
            max(starts[c] for c in rewound),
            current,
        )
        cursor = await conn.execute(
            self._sql_baseline, {"channels": [names[c].wire for c in rewound]}
        )
        tops: dict[str, int | None] = dict(await cursor.fetchall())
        for channel in rewound:
            starts[channel] = min(tops.get(names[channel].wire) or 0, current)

    async def unsubscribe(self, channels: Collection[str]) -> None:
        notify = []
        for channel in channels:
            names = self._listening.pop(channel, None)
            self._last.pop(channel, None)
            if names is not None:
                self._by_notify.pop(names.notify, None)
                notify.append(names.notify)
        if not notify or self._listen is None or self._listen.closed:
            return
        async with self._exclusive() as conn, self._errors(conn):
            await conn.execute(
                sql.SQL("; ").join(sql.SQL("UNLISTEN {}").format(sql.Identifier(n)) for n in notify)
            )

    # -- receiving -----------------------------------------------------------

    async def receive(self) -> Sequence[RawEvent]:
        while not self._inbox:
            if self._closed:
                raise psycopg.OperationalError(f"{self!r} was closed")
            conn = self._listen
            if conn is None or self._busy:
                # Nothing subscribed yet, or subscribe() is using the connection.
                self._changed.clear()
                await self._changed.wait()
                continue
            async with self._io:
                if self._busy or self._closed or conn is not self._listen:
                    continue
                task = asyncio.ensure_future(self._next_notifications(conn))
                self._waiting = task
                try:
                    await asyncio.wait((task,))
                finally:
                    self._waiting = None
                    if not task.done():
                        task.cancel()
                if task.cancelled():
                    continue  # interrupted by subscribe(), unsubscribe() or close()
                notes = task.result()
                await self._ingest(conn, notes)
        events = list(self._inbox)
        self._inbox.clear()
        return events

    @staticmethod
    async def _next_notifications(conn: Connection) -> list[psycopg.Notify]:
        """The notifications of the next packet (or those psycopg kept meanwhile)."""
        return [note async for note in conn.notifies(stop_after=1)]

    async def _ingest(self, conn: Connection, notes: Sequence[psycopg.Notify]) -> None:
        """Turn notifications into events, reading from the table those sent as an id."""
        parsed: list[tuple[str, int | None, bytes | None]] = []
        for note in notes:
            channel = self._by_notify.get(note.channel)
            if channel is None:
                continue  # unsubscribed meanwhile
            event_id, payload = _parse(note.payload)
            if event_id is not None:
                last = self._last.get(channel)
                if last is not None and event_id <= last:
                    continue  # already replayed
            parsed.append((channel, event_id, payload))
        missing = [event_id for _, event_id, payload in parsed if payload is None]
        rows: dict[int, tuple[str, bytes]] = {}
        if missing:
            async with self._errors(conn):
                cursor = conn.cursor(binary=True)
                await cursor.execute(self._sql_fetch, {"ids": missing})
                rows = {
                    event_id: (wire, bytes(data))
                    for event_id, wire, data in await cursor.fetchall()
                }
        for channel, event_id, payload in parsed:
            if payload is None:
                assert event_id is not None
                row = rows.get(event_id)
                if row is None or row[0] != self._names(channel).wire:
                    logger.warning(
                        "skipped event %s on channel %r of %r: notified, but not in the history "
                        "table (pruned already, or a foreign NOTIFY)",
                        event_id,
                        channel,
                        self.alias,
                    )
                    continue
                payload = row[1]
            self._deliver(channel, event_id, payload)

    def _deliver(self, channel: str, event_id: int | None, payload: bytes) -> None:
        if event_id is not None:
            last = self._last.get(channel)
            if last is not None and event_id <= last:
                return
            self._last[channel] = event_id
        self._inbox.append(RawEvent(channel, payload, None if event_id is None else str(event_id)))


def _parse(text: str) -> tuple[int | None, bytes | None]:
    """``(id, payload)`` of a notification: ``payload`` is ``None`` when only the id
    came; ``id`` is ``None`` for a foreign payload (someone's plain ``NOTIFY``)."""
    if text[:1] == "@":
        sep = text.find(":", 1)
        digits = text[1:] if sep < 0 else text[1:sep]
        if 0 < len(digits) <= 19 and digits.isascii() and digits.isdigit():
            event_id = int(digits)
            if sep < 0:
                return event_id, None
            kind, body = text[sep + 1 : sep + 2], text[sep + 2 :]
            if kind == "t":
                return event_id, body.encode()
            if kind == "b":
                with suppress(binascii.Error, ValueError):
                    return event_id, base64.b64decode(body, validate=True)
    return None, text.encode()


async def _shut(conn: Connection, grace: float) -> None:
    """Close ``conn`` without freeing its socket under a coroutine still waiting on it.

    That coroutine's event loop would keep watching the file descriptor number,
    which the next connection reuses ("connection socket closed"). So: let the
    statement in flight finish for ``grace`` seconds, else shut the socket down
    (waiters fail at once), and close once psycopg's lock is free.
    """
    acquired = False
    try:
        if grace > 0:
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(conn.lock.acquire(), grace)
                acquired = True
        if not acquired:
            with suppress(Exception):
                fd = os.dup(conn.pgconn.socket)
                with socket.socket(fileno=fd) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(conn.lock.acquire(), 2.0)
                acquired = True
        with suppress(Exception):
            await conn.close()
    finally:
        if acquired:
            conn.lock.release()


def _running_migrate() -> bool:
    """Whether these checks run inside ``migrate``, which is about to create the table."""
    from django.core.management.commands.migrate import Command as Migrate

    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if isinstance(frame.f_locals.get("self"), Migrate):
            return True
        frame = frame.f_back
    return False


def _table_exists_in(alias: str) -> bool | None:
    """Whether the history table is visible on Django's connection ``alias`` (``None``:
    cannot tell, e.g. the database is down; other checks and commands report that)."""
    from django.db import DatabaseError, connections

    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            return HISTORY_TABLE in connection.introspection.table_names(cursor)
    except DatabaseError:
        return None


def _table_exists_at(url: str) -> bool | None:
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (HISTORY_TABLE,)).fetchone()
    except psycopg.Error:
        return None
    return bool(row and row[0])
