"""Deleting the rows ``HISTORY_SIZE`` and ``HISTORY_MAX_AGE`` no longer keep.

Reads apply both bounds exactly (in SQL, see `statements.history`); the rows
themselves are deleted lazily, by the backend instances that publish: every
`PRUNE_EVERY` events an instance published or every `PRUNE_INTERVAL`
seconds, whichever comes first, it trims the channels it published to (down
to ``HISTORY_SIZE``) and every channel's rows past ``HISTORY_MAX_AGE``. The
same statements record each channel's highest deleted id in the pruned table,
which `PostgresBackend.retains` reads. Work-queue messages past their deadline
go at the same time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from . import queues, statements
from .connections import Connection

#: Trim history after this many events published by one backend instance ...
PRUNE_EVERY = 1000
#: ... or after this many seconds, whichever comes first.
PRUNE_INTERVAL = 60.0
#: Most rows one prune deletes for age (the next prune takes the rest).
PRUNE_BATCH = 10_000
#: Channels trimmed to ``HISTORY_SIZE`` per statement.
_SIZE_CHUNK = 1000


class Retention:
    """When to prune, which channels, and the pruning itself, for one backend instance."""

    def __init__(self, size: int | None, max_age: float | None) -> None:
        self.size = size
        self.max_age = max_age
        self._unpruned = 0
        self._channels: set[str] = set()
        self._pruned_at: float | None = None
        self._pruner: asyncio.Task[None] | None = None

    def restart_clock(self) -> None:
        """Count `PRUNE_INTERVAL` from now (the backend just connected)."""
        self._pruned_at = asyncio.get_running_loop().time()

    def published(
        self, wires: Collection[str], count: int, prune: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Note ``count`` events published on the channels ``wires``; start ``prune()``
        in the background when a prune is due and none is running."""
        self._unpruned += count
        self._channels.update(wires)
        now = asyncio.get_running_loop().time()
        due = self._unpruned >= PRUNE_EVERY or (
            self._pruned_at is not None and now - self._pruned_at >= PRUNE_INTERVAL
        )
        if due and (self._pruner is None or self._pruner.done()):
            self._pruned_at = now
            self._pruner = asyncio.ensure_future(prune())

    async def prune(self, conn: Connection) -> None:
        """Delete, on ``conn``, rows beyond ``HISTORY_SIZE`` on the channels published
        to since the last prune, rows older than ``HISTORY_MAX_AGE`` on every channel,
        and expired work-queue messages."""
        channels, self._channels = sorted(self._channels), set()
        self._unpruned = 0
        if self.size is not None:
            for start in range(0, len(channels), _SIZE_CHUNK):
                await conn.execute(
                    statements.PRUNE_SIZE,
                    {"keep": self.size, "channels": channels[start : start + _SIZE_CHUNK]},
                )
        await conn.execute(queues.PRUNE_EXPIRED, {"batch": PRUNE_BATCH})
        if self.max_age is not None:
            age = {"age": float(self.max_age), "batch": PRUNE_BATCH}
            cursor = await conn.execute(statements.OLDEST_EXPIRED, age)
            oldest = await cursor.fetchone()
            if oldest is not None and oldest[0]:
                await conn.execute(statements.PRUNE_AGE, age)
