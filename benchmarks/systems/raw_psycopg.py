"""raw-psycopg: a bare psycopg 3 LISTEN/NOTIFY loop, the ceiling for PostgreSQL;
raw-psycopg-durable: the same storing each event, as a hand-written durable bus does.

One connection sends ``pg_notify``; another LISTENs and reads ``notifies()``.
``notifies()`` holds the connection lock while it waits, so the reader is
stopped around each LISTEN / UNLISTEN (notifications arriving meanwhile are
kept by psycopg and handed out when it restarts).
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg import sql

from ..scenarios import Receiver, channel_name
from .base import POSTGRES_URL, Adapter, LocalFanout

NOTIFY = "SELECT pg_notify(%s, %s)"


class RawPsycopg(Adapter):
    def __init__(self) -> None:
        self.local = LocalFanout(self._listen, self._unlisten)
        self.reader: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()  # one LISTEN / UNLISTEN and reader restart at a time

    async def start(self) -> None:
        self.listener = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
        self.notifier = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)

    async def _run(self, statement: str, channel: str) -> None:
        async with self.lock:
            if self.reader is not None:
                self.reader.cancel()
                await asyncio.gather(self.reader, return_exceptions=True)
            await self.listener.execute(sql.SQL(statement).format(sql.Identifier(channel)))
            self.reader = asyncio.create_task(self._read())

    async def _listen(self, channel: str) -> None:
        await self._run("LISTEN {}", channel)

    async def _unlisten(self, channel: str) -> None:
        await self._run("UNLISTEN {}", channel)

    async def _read(self) -> None:
        async for notify in self.listener.notifies():
            self.local.dispatch(notify.channel, notify.payload)

    async def publish(self, channel: str, payload: str) -> None:
        await self.notifier.execute(NOTIFY, (channel, payload))

    def subscribe(self, channel: str) -> Any:
        return self.local.subscription(channel)

    def receiver(self, handle: asyncio.Queue[str]) -> Receiver:
        return handle.get, None

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        await self.listener.close()
        await self.notifier.close()


#: raw-psycopg-durable's table: what a hand-written durable bus keeps.
DURABLE_TABLE = "bench_durable_events"
CREATE = (
    f"CREATE TABLE IF NOT EXISTS {DURABLE_TABLE} (id bigserial PRIMARY KEY,"
    " channel text NOT NULL, payload text NOT NULL, created timestamptz NOT NULL DEFAULT now())"
)
# One statement, so one round trip and one transaction (autocommit): the
# INSERT and the NOTIFY commit together or not at all.
INSERT_NOTIFY = (
    f"WITH stored AS (INSERT INTO {DURABLE_TABLE} (channel, payload) VALUES (%s, %s)"
    " RETURNING channel, payload) SELECT pg_notify(channel, payload) FROM stored"
)


class RawPsycopgDurable(RawPsycopg):
    """raw-psycopg, plus an ``INSERT`` of each event in the same transaction as its
    ``NOTIFY`` (one statement): a hand-written bus that keeps its history,
    committed durably as PostgreSQL does by default. The run's rows are deleted
    at the end."""

    async def start(self) -> None:
        await super().start()
        await self.notifier.execute(CREATE)

    async def publish(self, channel: str, payload: str) -> None:
        await self.notifier.execute(INSERT_NOTIFY, (channel, payload))

    async def close(self) -> None:
        prefix = channel_name("")
        await self.notifier.execute(
            f"DELETE FROM {DURABLE_TABLE} WHERE channel LIKE %s", (prefix + "%",)
        )
        await super().close()
