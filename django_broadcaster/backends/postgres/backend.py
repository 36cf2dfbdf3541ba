"""`PostgresBackend`: connections, publishing, history and retention, with the
``LISTEN`` side in `Listener`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

import psycopg
from django.core.checks import CheckMessage

from ..base import BackendConfig, BaseBackend, RawEvent
from ..liveness import LIVENESS_INTERVAL
from . import configuration, deployment, queues, statements
from .connections import Connection, Connector, shut
from .envelope import event_number, inline
from .listener import Listener
from .names import ChannelNames, channel_names, short_prefix
from .retention import Retention
from .round_trip import Statement
from .sealing import NotifyKey

logger = logging.getLogger("django_broadcaster")

#: How long close() lets an in-flight publish finish before cutting it off.
PUBLISH_GRACE = 1.0


class PostgresBackend(BaseBackend):
    """PostgreSQL via psycopg 3: history table plus ``LISTEN``/``NOTIFY``.

    ``LOCATION`` is a ``DATABASES`` alias (empty: ``"default"``) or a
    ``postgresql://`` URL. ``OPTIONS``: ``HISTORY_SIZE`` (events kept per
    channel) and ``HISTORY_MAX_AGE`` (seconds), either may be ``None``;
    ``SYNCHRONOUS_COMMIT`` (``False``: publishing does not wait for the WAL flush);
    ``NOTIFY_PAYLOADS`` (``False``: notifications carry ids only, never events);
    ``LIVENESS_INTERVAL`` (seconds of silence before the ``LISTEN`` connection is probed).
    """

    supports_history = True
    supports_queues = True
    default_options: ClassVar[Mapping[str, Any]] = {
        "HISTORY_SIZE": 1000,
        "HISTORY_MAX_AGE": 86400,
        "SYNCHRONOUS_COMMIT": True,
        "NOTIFY_PAYLOADS": True,
        "LIVENESS_INTERVAL": LIVENESS_INTERVAL,
    }
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (
        psycopg.OperationalError,
        OSError,
    )

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._prefix = short_prefix(self.key_prefix)
        size: int | None = self.options["HISTORY_SIZE"]
        max_age: float | None = self.options["HISTORY_MAX_AGE"]
        self._size = size
        self._synchronous: bool = self.options["SYNCHRONOUS_COMMIT"]
        self._history = statements.history(max_age)
        self._page = statements.page(max_age, size)
        self._retained = statements.retained(max_age)
        self._connector = Connector(self.alias, self.location, repr(self))
        self._retention = Retention(size, max_age)
        self._publish_one = Statement(b"django_broadcaster_publish", statements.PUBLISH)
        #: Authenticates events carried inline by notifications (``None``: no
        #: ``SECRET_KEY``, or ``NOTIFY_PAYLOADS`` off; every notification is a wake-up).
        self._key = (
            NotifyKey.from_settings(statements.HISTORY_TABLE, self._prefix)
            if self.options["NOTIFY_PAYLOADS"]
            else None
        )
        self._listener = Listener(
            self.alias,
            self._prefix,
            self._connector,
            max_age,
            self.options["LIVENESS_INTERVAL"],
            self._key,
        )
        #: The connection that publishes, reads history and prunes (open between
        #: connect() and close()).
        self._pub: Connection | None = None

    # -- settings ------------------------------------------------------------

    @classmethod
    def check_location(cls, location: str) -> None:
        configuration.check_location(location)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        configuration.check_options(options)

    @classmethod
    def deployment_checks(
        cls, config: BackendConfig, databases: Sequence[str] | None
    ) -> list[CheckMessage]:
        """``django_broadcaster.E008`` when the history table is missing."""
        return deployment.deployment_checks(config, databases)

    # -- names ---------------------------------------------------------------

    def wire_name(self, channel: str) -> str:
        return self._names(channel).wire

    def channel_name(self, wire_name: str) -> str:
        return wire_name[len(self._prefix) + 1 :] if self._prefix else wire_name

    def notify_channel(self, channel: str) -> str:
        """The ``NOTIFY`` channel of ``channel`` (at most 63 bytes), e.g. for ``psql``."""
        return self._names(channel).notify

    def _names(self, channel: str) -> ChannelNames:
        return channel_names(self._prefix, channel)

    # -- connection ----------------------------------------------------------

    async def connect(self) -> None:
        """Open the publishing connection; the ``LISTEN`` one opens on the first
        subscription."""
        self._connector.start()
        # Without synchronous commit, publishing stops waiting for the WAL
        # flush; see the docs for what a server crash may then lose.
        settings = () if self._synchronous else ("SET synchronous_commit = off",)
        self._pub = await self._connector.open(*settings)
        self._retention.restart_clock()

    async def close(self) -> None:
        self._connector.stop()
        pub, self._pub = self._pub, None
        # An in-flight publish may finish (cutting it off after COMMIT would make
        # the hub's retry store it twice); reads on the LISTEN connection need not.
        if pub is None:
            await self._listener.close()
        else:
            await asyncio.gather(self._listener.close(), shut(pub, PUBLISH_GRACE))

    def _publisher(self) -> Connection:
        """The publishing connection; raises one of `connection_errors` when closed
        (the hub then reconnects)."""
        if self._pub is None:
            raise psycopg.OperationalError(f"{self!r} is not connected")
        return self._pub

    # -- publishing ----------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> str | None:
        names = self._names(channel)
        conn = self._publisher()
        body, head = self._inline(names, payload)
        outer = None if body is None or self._key is None else self._key.outer
        values = (names.lock_key, names.wire, payload, names.notify, body, head, outer)
        async with self._connector.errors():
            result = await self._publish_one.run(conn, values)
        self._retention.published((names.wire,), 1, self.prune)
        event_id = result.get_value(0, 0) if result.ntuples else None
        if event_id is None:  # pragma: no cover - the statement returns the new row's id
            raise psycopg.DataError(f"publishing on {channel!r} returned no id")
        return event_id.decode()

    async def publish_many(
        self, events: Sequence[tuple[str, bytes]]
    ) -> list[str | Exception | None]:
        """One statement for the lot (all or nothing); when PostgreSQL refuses it for
        another reason than the connection (a row-level security policy refusing one
        channel, say), nothing was stored: each event is then sent alone, so only the
        refused one fails."""
        if len(events) > 1:
            try:
                return await self._publish_together(events)
            except self.connection_errors:
                raise
            except psycopg.Error:
                pass  # nothing was stored: sending each alone finds the refused ones
        return await super().publish_many(events)

    async def _publish_together(
        self, events: Sequence[tuple[str, bytes]]
    ) -> list[str | Exception | None]:
        names = [self._names(channel) for channel, _ in events]
        conn = self._publisher()
        inlines = [self._inline(n, payload) for n, (_, payload) in zip(names, events, strict=True)]
        params = {
            "keys": sorted({n.lock_key for n in names}),
            "channels": [n.wire for n in names],
            "payloads": [payload for _, payload in events],
            "notifies": [n.notify for n in names],
            "inlines": [body for body, _ in inlines],
            "heads": [head for _, head in inlines],
            "outer": None if self._key is None else self._key.outer,
        }
        async with self._connector.errors():
            cursor = await conn.execute(statements.PUBLISH_MANY, params)
            rows = await cursor.fetchall()
        if len(rows) != len(events):  # pragma: no cover - the statement returns one row per event
            raise psycopg.DataError(f"published {len(events)} events, got {len(rows)} ids")
        self._retention.published({n.wire for n in names}, len(events), self.prune)
        return [str(row[0]) for row in rows]

    def _inline(self, names: ChannelNames, payload: bytes) -> tuple[str | None, bytes | None]:
        """The statement parameters ``inline`` and ``head`` of ``payload`` on a channel:
        ``(None, None)`` (a wake-up) without a key or for a payload too large."""
        body = None if self._key is None else inline(payload)
        if body is None or self._key is None:
            return None, None
        return body, self._key.head(names.notify)

    # -- work queues (see `queues`) -------------------------------------------

    async def enqueue(
        self, queue: str, payload: bytes, *, capacity: int, expiry: float, wake: bytes
    ) -> bool:
        names = self._names(queue)
        conn = self._publisher()
        params = {
            "key": names.lock_key,
            "queue": names.wire,
            "payload": payload,
            "capacity": capacity,
            "expiry": float(expiry),
            "wake": wake,
            "notify": names.notify,
        }
        async with self._connector.errors():
            cursor = await conn.execute(queues.ENQUEUE, params)
            queued = await cursor.fetchone() is not None
        if queued:
            self._retention.published((names.wire,), 1, self.prune)
        return queued

    async def dequeue(self, queue: str, count: int) -> list[bytes]:
        conn = self._publisher()
        params = {"queue": self.wire_name(queue), "count": count}
        async with self._connector.errors():
            cursor = await conn.execute(queues.DEQUEUE, params)
            rows = await cursor.fetchall()
        rows.sort(key=lambda row: (-row[0], row[1]))
        return [bytes(payload) for _, _, payload in rows]

    async def restore(
        self, queue: str, payloads: Sequence[bytes], *, expiry: float, wake: bytes
    ) -> None:
        conn = self._publisher()
        params = {"queue": self.wire_name(queue), "payloads": list(payloads), "expiry": expiry}
        async with self._connector.errors():
            await conn.execute(queues.RESTORE, params)
        await self.publish(queue, wake)

    async def prune(self) -> None:
        """Delete what retention no longer keeps: beyond ``HISTORY_SIZE`` on the channels
        this instance published to since the last prune, and older than ``HISTORY_MAX_AGE``
        on every channel. Runs by itself every so often; reads apply the bounds exactly."""
        try:
            conn = self._publisher()
            async with self._connector.errors():
                await self._retention.prune(conn)
        except self.connection_errors as exc:
            logger.debug("pruning the history of %r failed: %s", self.alias, exc)
        except Exception:
            logger.exception("pruning the history of %r failed", self.alias)

    # -- history -------------------------------------------------------------

    async def history(
        self, channel: str, since: str | None, limit: int | None
    ) -> Sequence[RawEvent]:
        after = 0 if since is None else event_number(since)
        if self._size is not None:
            limit = self._size if limit is None else min(limit, self._size)
        conn = self._publisher()
        params = {"channel": self.wire_name(channel), "after": after, "limit": limit}
        async with self._connector.errors():
            cursor = conn.cursor(binary=True)
            await cursor.execute(self._history, params)
            rows = await cursor.fetchall()
        return [RawEvent(channel, bytes(payload), str(event_id)) for event_id, payload in rows]

    async def history_page(self, channel: str, since: str | None, count: int) -> Sequence[RawEvent]:
        after = 0 if since is None else event_number(since)
        if count <= 0:
            return []
        conn = self._publisher()
        params = {"channel": self.wire_name(channel), "after": after, "limit": count}
        async with self._connector.errors():
            cursor = conn.cursor(binary=True)
            await cursor.execute(self._page, params)
            rows = await cursor.fetchall()
        return [RawEvent(channel, bytes(payload), str(event_id)) for event_id, payload in rows]

    async def retains(self, channel: str, event_id: str) -> bool:
        """Whether reads still return every event of ``channel`` after ``event_id``: none
        of them pruned (the prune statements record each channel's highest deleted id),
        past ``HISTORY_MAX_AGE``, or beyond the newest ``HISTORY_SIZE``; and ``False``
        for a position past the last id the table's sequence issued (made up, or the
        database went back in time). Reads at most ``HISTORY_SIZE + 1`` rows of the
        channel (all those after ``event_id`` when ``HISTORY_SIZE`` is ``None``: what the
        resume reads anyway)."""
        after = event_number(event_id)
        limit = None if self._size is None else self._size + 1
        params = {"channel": self.wire_name(channel), "after": after, "limit": limit}
        conn = self._publisher()
        async with self._connector.errors():
            cursor = await conn.execute(self._retained, params)
            row = await cursor.fetchone()
        assert row is not None
        pruned, count, expired, unissued = row
        beyond_size = self._size is not None and count > self._size
        gone = pruned is not None and pruned > after
        return not (expired or beyond_size or gone or unissued)

    def id_order(self, event_id: str) -> tuple[int, ...]:
        """``(row id,)``; `ValueError` for anything but a ``bigint`` id from 0 up in
        plain decimal digits."""
        return (event_number(event_id),)

    # -- subscriptions (the LISTEN connection) ---------------------------------

    async def subscribe(self, positions: Mapping[str, str | None]) -> Mapping[str, str]:
        return await self._listener.subscribe(positions)

    async def unsubscribe(self, channels: Collection[str]) -> None:
        await self._listener.unsubscribe(channels)

    async def receive(self) -> Sequence[RawEvent]:
        return await self._listener.receive()
