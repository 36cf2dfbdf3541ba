"""Backends that count the events their ``history()`` hands out, for the SSE tests
that check how much history a response reads (a cost that must not grow with the
retained history).

Real backends (Redis Streams, memory) with one addition; the count is per process,
so the tests using them drive the response in the test process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from django_broadcaster.backends.base import RawEvent
from django_broadcaster.backends.memory import MemoryBackend
from django_broadcaster.backends.redis import RedisStreamBackend


class CountsHistory:
    """Mixin: counts, in `events_read`, the events ``history()`` returns."""

    #: Events handed out by ``history()``, over every instance, since the last reset.
    events_read: ClassVar[int] = 0

    async def history(
        self, channel: str, since: str | None, limit: int | None
    ) -> Sequence[RawEvent]:
        events: Sequence[RawEvent] = await super().history(channel, since, limit)  # type: ignore[misc]
        CountsHistory.events_read += len(events)
        return events


class CountingRedisStreamBackend(CountsHistory, RedisStreamBackend):
    """`RedisStreamBackend` counting the events its history reads return."""


class CountingMemoryBackend(CountsHistory, MemoryBackend):
    """`MemoryBackend` counting the events its history reads return."""
