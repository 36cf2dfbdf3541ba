"""The ``LISTEN`` side of `PostgresBackend`: subscriptions, resuming, notifications to events.

One connection per backend instance runs ``LISTEN``, opened on the first
subscription, so a process that only publishes never opens it. Subscribing
takes the channels' publish locks for an instant, starts ``LISTEN`` and reads
either each new channel's newest id (its baseline) or every event after each
resumed channel's position, all in one transaction: every event committed
before is in the table, every later one is notified. A notification carrying
its event with a valid MAC (see `sealing`) is handed out as it is; any other
only wakes the reader (anyone may ``NOTIFY``): what it hands out is then read
from the table, so a forged notification delivers nothing and moves no
position. Per channel, events are handed out in id order and an id is never
handed out twice. Between statements on the connection, the event loop
watches its socket and collects its notifications (see `notifications`). After
``OPTIONS["LIVENESS_INTERVAL"]`` seconds without a notification the connection
is probed with ``SELECT 1``; it is taken for dead (a half-open link) when that,
or the read of notified events, gets no reply within another interval: the hub
reconnects and resumes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

from ... import loops
from ..base import RawEvent
from . import statements
from .connections import Connection, Connector, shut
from .envelope import Notified, event_number, notified
from .names import ChannelNames, channel_names
from .notifications import NotificationReader
from .sealing import NotifyKey

logger = logging.getLogger("django_broadcaster")

T = TypeVar("T")

#: Channels LISTENed (and locked) per transaction; keeps lock-table use small.
LISTEN_CHUNK = 100


@dataclass
class _Batch:
    """One batch of notifications, sorted."""

    #: ``(channel, id or None for a foreign payload, that payload)``, in arrival order.
    announced: list[tuple[str, int | None, bytes]] = field(default_factory=list)
    #: The channels to read from the table, each up to the highest id announced, after
    #: the last id handed out there, by wire name (all taken with the batch: an
    #: unsubscribe may come before the read).
    upto: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    wires: dict[str, str] = field(default_factory=dict)
    #: Per channel announced, its events to hand out, in id order.
    pending: dict[str, deque[tuple[int, bytes]]] = field(default_factory=dict)


class Listener:
    """The ``LISTEN`` connection of one backend instance and what it is subscribed to."""

    def __init__(
        self,
        alias: str,
        prefix: str,
        connector: Connector,
        history_max_age: float | None,
        liveness: float | None,
        key: NotifyKey | None,
    ) -> None:
        self.alias = alias
        self._key = key
        self._liveness = liveness
        self._prefix = prefix
        self._connector = connector
        self._replay = statements.replay(history_max_age)
        #: The LISTEN connection: ``None`` until the first subscription after connecting.
        self.connection: Connection | None = None
        # Channel -> names, NOTIFY name -> channel, and per channel the highest
        # id handed out (or the id it started from).
        self._listening: dict[str, ChannelNames] = {}
        self._by_notify: dict[str, str] = {}
        self._last: dict[str, int] = {}
        self._inbox: deque[RawEvent] = deque()
        # Reads the notifications of `connection` between statements: stopped by
        # subscribe()/unsubscribe()/close() and by receive()'s own reads, started
        # again by receive(); _io keeps their statements apart.
        self._reader: NotificationReader | None = None
        self._io = asyncio.Lock()
        self._busy = 0
        self._changed = asyncio.Event()

    async def close(self) -> None:
        """Forget every subscription and close the connection; a waiting `receive`
        raises. Called once the connector is stopped."""
        self._changed.set()
        self._listening.clear()
        self._by_notify.clear()
        self._last.clear()
        self._inbox.clear()  # not handed out yet: the hub resumes before them
        conn, self.connection = self.connection, None
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop()
        if conn is not None:
            await shut(conn, 0.0)

    # -- subscriptions -------------------------------------------------------

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[Connection]:
        """The connection (opened on first use), with receive() out of the way."""
        self._busy += 1
        try:
            async with self._io:
                if self._connector.stopped:
                    raise psycopg.OperationalError(f"{self._connector.owner} is closed")
                if self.connection is None:
                    self.connection = await self._connector.open()
                    self._reader = NotificationReader(
                        self.connection, self._liveness, self._changed.set
                    )
                elif self.connection.closed:
                    raise psycopg.OperationalError("the LISTEN connection was lost")
                if self._reader is not None:
                    self._reader.stop()
                yield self.connection
        finally:
            self._busy -= 1
            self._changed.set()

    async def subscribe(self, positions: Mapping[str, str | None]) -> dict[str, str]:
        """``LISTEN`` to these channels, replaying what came after each position;
        the baselines of the channels given ``None``."""
        baselines: dict[str, str] = {}
        async with self._exclusive() as conn:
            items = list(positions.items())
            for start in range(0, len(items), LISTEN_CHUNK):
                chunk = items[start : start + LISTEN_CHUNK]
                baselines.update(await self._listen_to(conn, chunk))
        return baselines

    async def _listen_to(
        self, conn: Connection, items: Sequence[tuple[str, str | None]]
    ) -> dict[str, str]:
        """LISTEN to ``items`` (channel, position); the baselines of new channels."""
        names = {channel: channel_names(self._prefix, channel) for channel, _ in items}
        starts = {c: event_number(position) for c, position in items if position is not None}
        fresh = [names[c].wire for c in names if c not in starts]
        by_wire = {n.wire: c for c, n in names.items()}
        # Under the channels' publish locks: every event committed before is
        # visible to the queries below, every later one is notified.
        async with self._connector.errors(), conn.transaction():
            keys = sorted({n.lock_key for n in names.values()})
            await conn.execute(statements.LOCK_CHANNELS, {"keys": keys})
            await conn.execute(statements.listen(n.notify for n in names.values()))
            if starts:
                await self._check_rewind(conn, starts, names)
            baseline: list[tuple[Any, ...]] = []
            if fresh:
                cursor = await conn.execute(statements.NEWEST_IDS, {"channels": fresh})
                baseline = await cursor.fetchall()
            replay: list[tuple[Any, ...]] = []
            if starts:
                cursor = conn.cursor(binary=True)
                await cursor.execute(
                    self._replay,
                    {
                        "channels": [names[c].wire for c in starts],
                        "after": list(starts.values()),
                        # Everything still in the table: an outage may span more
                        # events than HISTORY_SIZE before a prune deletes them.
                        "limit": None,
                    },
                )
                replay = await cursor.fetchall()
        for channel, named in names.items():
            self._listening[channel] = named
            self._by_notify[named.notify] = channel
        baselines: dict[str, str] = {}
        for wire, top in baseline:
            self._last[by_wire[wire]] = top or 0
            baselines[by_wire[wire]] = str(top or 0)
        self._last.update(starts)
        for wire, event_id, payload in replay:
            self._deliver(by_wire[wire], event_id, bytes(payload))
        return baselines

    async def _check_rewind(
        self, conn: Connection, starts: dict[str, int], names: Mapping[str, ChannelNames]
    ) -> None:
        """Resume points past the id sequence mean the database went back in time (a crash
        that lost WAL, a failover to a lagging replica): new events reuse those ids, so
        resume after what the table still holds instead of skipping them."""
        cursor = await conn.execute(statements.LAST_ISSUED_ID)
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
            statements.NEWEST_IDS, {"channels": [names[c].wire for c in rewound]}
        )
        tops: dict[str, int | None] = dict(await cursor.fetchall())
        for channel in rewound:
            starts[channel] = min(tops.get(names[channel].wire) or 0, current)

    async def unsubscribe(self, channels: Collection[str]) -> None:
        """``UNLISTEN`` these channels."""
        notify = []
        for channel in channels:
            names = self._listening.pop(channel, None)
            self._last.pop(channel, None)
            if names is not None:
                self._by_notify.pop(names.notify, None)
                notify.append(names.notify)
        if not notify or self.connection is None or self.connection.closed:
            return
        async with self._exclusive() as conn, self._connector.errors():
            await conn.execute(statements.unlisten(notify))

    # -- receiving -----------------------------------------------------------

    async def receive(self) -> list[RawEvent]:
        """The next events of subscribed channels, in order (waits while there are none)."""
        while not self._inbox:
            if self._connector.stopped:
                raise psycopg.OperationalError(f"{self._connector.owner} was closed")
            conn, reader = self.connection, self._reader
            if conn is None or reader is None or self._busy:
                # Nothing subscribed yet, or subscribe() is using the connection.
                pass
            elif reader.notes:
                await self._hand_out_notified(conn, reader)
                continue
            elif not reader.running:
                if reader.failure is not None:
                    async with self._connector.errors():
                        raise reader.failure
                if reader.silent:
                    await self._probe(conn, reader)
                    continue
                reader.start()
            self._changed.clear()
            await self._changed.wait()
        events = list(self._inbox)
        self._inbox.clear()
        return events

    async def _hand_out_notified(self, conn: Connection, reader: NotificationReader) -> None:
        """Hand out what the notifications received announce, reading the table when
        one is a wake-up (the reading stops meanwhile: the read needs the connection)."""
        batch = self._sort(reader.take())
        rows: list[tuple[str, int, bytes]] = []
        if batch.upto:
            async with self._io:
                if conn is not self.connection:
                    return  # closed meanwhile: the hub resumes from its positions
                reader.stop()
                rows = await self._bounded(
                    conn, self._rows_up_to(conn, batch), "reading notified events"
                )
        self._hand_out(batch, rows)

    async def _probe(self, conn: Connection, reader: NotificationReader) -> None:
        """``SELECT 1`` on the connection the reading found silent (unless in use)."""
        async with self._io:
            if not self._busy and not self._connector.stopped and conn is self.connection:
                reader.silent = False
                await self._bounded(conn, conn.execute("SELECT 1"), "a liveness probe")

    async def _bounded(self, conn: Connection, statement: Awaitable[T], what: str) -> T:
        """Await ``statement`` on ``conn``; when it gets no reply within
        ``LIVENESS_INTERVAL``, shut ``conn`` and raise (the hub reconnects). Not
        cancelled on timeout: psycopg would try to cancel it through the same dead link."""
        if self._liveness is None:
            return await statement
        task = asyncio.ensure_future(statement)
        try:
            await asyncio.wait((task,), timeout=self._liveness)
        except loops.ERRORS_AND_CANCELLATION:
            task.cancel()
            raise
        if not task.done():
            await shut(conn, 0.0)  # the statement fails at once
            await asyncio.wait((task,), timeout=1.0)
            task.cancel()
            with suppress(BaseException):
                await task
            raise psycopg.OperationalError(
                f"the LISTEN connection of {self.alias!r} is taken for dead: no reply to "
                f"{what} within {self._liveness:g}s"
            )
        async with self._connector.errors():
            return task.result()

    def _sort(self, notes: Sequence[psycopg.Notify]) -> _Batch:
        """What ``notes`` announce, and which channels must be read from the table. A
        wake-up is trusted for nothing but "this channel has news up to this id" (anyone
        may ``NOTIFY``): the events handed out, and the positions they move, are rows of
        the table, read in one query per batch. A channel whose notifications in the
        batch all carry their event with a valid MAC gets those events as they are."""
        batch = _Batch()
        carried: dict[str, list[tuple[int, bytes]]] = {}  # authenticated inline events
        top: dict[str, int] = {}  # per channel, the highest id announced
        for note in notes:
            channel = self._by_notify.get(note.channel)
            if channel is None:
                continue  # unsubscribed meanwhile
            said = notified(note.payload)
            if said is None:
                batch.announced.append((channel, None, note.payload.encode()))
                continue
            if said.id <= self._last.get(channel, 0):
                continue  # handed out already
            batch.announced.append((channel, said.id, b""))
            top[channel] = max(said.id, top.get(channel, 0))
            if said.payload is not None and self._authentic(note.channel, said):
                carried.setdefault(channel, []).append((said.id, said.payload))
            else:
                batch.upto[channel] = 0
        for channel, highest in top.items():
            if channel in batch.upto:
                batch.upto[channel] = highest
                batch.after[channel] = self._last.get(channel, 0)
                batch.wires[self._listening[channel].wire] = channel
                batch.pending[channel] = deque()
            else:
                batch.pending[channel] = deque(sorted(carried[channel]))
        return batch

    def _hand_out(self, batch: _Batch, rows: Sequence[tuple[str, int, bytes]]) -> None:
        """Deliver ``batch``, the channels it had to read getting ``rows`` (theirs up to
        the highest id announced), in the order of the notifications. A notified id
        that is no row of that channel is refused: it hands out nothing, so the rows
        read up to it wait for the notifications that announce them."""
        for channel, event_id, payload in rows:
            batch.pending[channel].append((event_id, payload))
        read = {(channel, event_id) for channel, event_id, _ in rows}
        refused = [
            (channel, event_id)
            for channel, event_id, _ in batch.announced
            if channel in batch.upto and event_id is not None and (channel, event_id) not in read
        ]
        for channel, announced_id, payload in batch.announced:
            if announced_id is None:
                self._deliver(channel, None, payload)
                continue
            if (channel, announced_id) in refused:
                continue
            queue = batch.pending[channel]  # the channel's events up to the announced id
            while queue and queue[0][0] <= announced_id:
                self._deliver(channel, *queue.popleft())
        if refused:
            logger.warning(
                "refused %d notification(s) on channel(s) %s of %r: the ids they announce "
                "are no events of that channel in the history table (a forged NOTIFY, or "
                "pruned already); nothing was handed out for them",
                len(refused),
                ", ".join(sorted({repr(channel) for channel, _ in refused})),
                self.alias,
            )

    def _authentic(self, notify: str, said: Notified) -> bool:
        """Whether ``said`` carries an event with the MAC of this backend's key."""
        return (
            self._key is not None
            and said.mac is not None
            and said.payload is not None
            and self._key.verify(notify, said.digits, said.mac, said.payload)
        )

    async def _rows_up_to(self, conn: Connection, batch: _Batch) -> list[tuple[str, int, bytes]]:
        """``(channel, id, payload)`` of the rows of each channel ``batch`` reads, after
        the last event handed out there, up to the highest id announced, in id order."""
        wires, upto, after = batch.wires, batch.upto, batch.after
        async with self._connector.errors():
            cursor = conn.cursor(binary=True)
            if len(wires) == 1:
                ((wire, channel),) = wires.items()
                params = {
                    "channel": wire,
                    "after": after[channel],
                    "upto": upto[channel],
                }
                await cursor.execute(statements.FOLLOW_ONE, params)
                return [(channel, i, bytes(payload)) for i, payload in await cursor.fetchall()]
            channels = list(wires.values())
            params_many = {
                "channels": list(wires),
                "after": [after[channel] for channel in channels],
                "upto": [upto[channel] for channel in channels],
            }
            await cursor.execute(statements.FOLLOW, params_many)
            found = await cursor.fetchall()
        return [(wires[wire], event_id, bytes(payload)) for wire, event_id, payload in found]

    def _deliver(self, channel: str, event_id: int | None, payload: bytes) -> None:
        if channel not in self._listening:
            return  # unsubscribed while its events were read
        if event_id is not None:
            last = self._last.get(channel)
            if last is not None and event_id <= last:
                return
            self._last[channel] = event_id
        self._inbox.append(RawEvent(channel, payload, None if event_id is None else str(event_id)))
