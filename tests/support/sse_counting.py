"""Backends that count the events their history reads hand out, for the SSE tests
that check how much history a response reads and holds (costs that must not grow
with the retained history).

Real backends (Redis Streams, memory, PostgreSQL) with one addition; the counts are
per process, so the tests using them drive the response in the test process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from django_broadcaster.backends.base import RawEvent
from django_broadcaster.backends.memory import MemoryBackend
from django_broadcaster.backends.postgres import PostgresBackend
from django_broadcaster.backends.redis import RedisStreamBackend


class CountsHistory:
    """Mixin: counts, in `events_read`, the events ``history()`` and ``history_page()``
    return, and keeps the most one call returned in `largest_read`."""

    #: Events handed out by history reads, over every instance, since the last `reset`.
    events_read: ClassVar[int] = 0
    #: The most events one history read handed out since the last `reset`.
    largest_read: ClassVar[int] = 0

    @staticmethod
    def reset() -> None:
        CountsHistory.events_read = CountsHistory.largest_read = 0

    @staticmethod
    def _count(events: Sequence[RawEvent]) -> Sequence[RawEvent]:
        CountsHistory.events_read += len(events)
        CountsHistory.largest_read = max(CountsHistory.largest_read, len(events))
        return events

    async def history(
        self, channel: str, since: str | None, limit: int | None
    ) -> Sequence[RawEvent]:
        return self._count(await super().history(channel, since, limit))  # type: ignore[misc]

    async def history_page(self, channel: str, since: str | None, count: int) -> Sequence[RawEvent]:
        return self._count(await super().history_page(channel, since, count))  # type: ignore[misc]


class CountingRedisStreamBackend(CountsHistory, RedisStreamBackend):
    """`RedisStreamBackend` counting the events its history reads return."""


class CountingMemoryBackend(CountsHistory, MemoryBackend):
    """`MemoryBackend` counting the events its history reads return."""


class CountingPostgresBackend(CountsHistory, PostgresBackend):
    """`PostgresBackend` counting the events its history reads return."""
