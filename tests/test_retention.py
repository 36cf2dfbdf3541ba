"""What the memory and Redis Streams backends keep, and say they keep.

``retains()`` (behind ``HistoryGap``) is exact on the memory backend, even at
the newest dropped event; ``IDLE_RETENTION`` drops the history of channels
without a publish — memory rings, stream keys (by a time to live refreshed
with each publish) — and a position from before it is a gap, never a silently
short replay. The conformance kit checks the shared part of this on every
backend; these tests add what is particular to these two.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from django_broadcaster import Broadcast, HistoryGap
from django_broadcaster.backends.base import BaseBackend
from django_broadcaster.backends.memory import MemoryBackend
from django_broadcaster.backends.redis import RedisStreamBackend, stream_ids
from django_broadcaster.config import create_broadcast
from django_broadcaster.exceptions import ConfigError

from .support.backends import REDIS_URL, make_bus
from .support.redis_servers import RedisServer

TIMEOUT = 10

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def admin() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL, protocol=2)
    yield client
    await client.connection_pool.disconnect()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def memory_bus(**options: Any) -> Broadcast:
    """A memory bus on a store of its own."""
    return make_bus("memory", LOCATION=f"retention.{uuid.uuid4().hex}", OPTIONS=options)


async def gap(bus: Broadcast, channel: str, since: str | None) -> bool:
    """Whether resuming ``channel`` at ``since`` (an id) is refused as a gap; checks
    that a replay it allows holds every retained event after ``since``."""
    assert since is not None
    try:
        replay = await bus.ahistory(channel, since=since, limit=None)
    except HistoryGap:
        return True
    order = bus.config.backend_class(bus.config).id_order
    everything = await bus.ahistory(channel, limit=None)
    assert replay == [e for e in everything if order(e.id or "") > order(since)]
    return False


async def until(condition: Any, what: str) -> None:
    for _ in range(int(TIMEOUT / 0.01)):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {what} within {TIMEOUT}s")


# -- memory: exact ----------------------------------------------------------------


async def test_memory_knows_exactly_which_events_it_dropped() -> None:
    bus = memory_bus(HISTORY_SIZE=3)
    try:
        other = await bus.apublish("other", "interleaved")  # ids are shared by every channel
        ids = [await bus.apublish("ring", i) for i in range(5)]
        assert [e.id for e in await bus.ahistory("ring")] == ids[2:]
        assert await gap(bus, "ring", ids[0])  # ids[1] was dropped after it
        assert not await gap(bus, "ring", ids[1])  # the newest dropped: nothing after it is
        assert not await gap(bus, "ring", ids[2])
        assert await gap(bus, "ring", other)  # before ids[0], which is gone
        async with bus.subscribe("ring", since=ids[1]) as sub:
            assert [(await sub.get(TIMEOUT)).id for _ in range(3)] == ids[2:]
    finally:
        await bus.aclose()


async def test_memory_without_history_every_earlier_position_is_a_gap() -> None:
    bus = memory_bus(HISTORY_SIZE=0)
    try:
        first = await bus.apublish("none", 1)
        newest = await bus.apublish("none", 2)
        assert await gap(bus, "none", first)
        assert not await gap(bus, "none", newest)
    finally:
        await bus.aclose()


async def test_memory_drops_the_rings_of_idle_channels() -> None:
    bus = memory_bus(IDLE_RETENTION=0.05)
    try:
        old = [await bus.apublish("idle", i) for i in range(2)]
        await asyncio.sleep(0.1)
        await bus.apublish("busy", "sweeps")  # a publish sweeps the idle rings
        assert await bus.ahistory("idle") == []
        assert await gap(bus, "idle", old[0])  # old[1] was dropped after it
        assert not await gap(bus, "idle", old[1])  # nothing was published after it
        # A new ring does not hide what the old one lost.
        again = await bus.apublish("idle", "again")
        assert await gap(bus, "idle", old[0])
        assert [e.id for e in await bus.ahistory("idle", since=old[1])] == [again]
        # A channel subscribed afterwards resumes from its baseline without a false gap.
        async with bus.subscribe("fresh") as sub:
            await bus.apublish("fresh", "hello")
            assert (await sub.get(TIMEOUT)).message == "hello"
    finally:
        await bus.aclose()


async def test_memory_keeps_busy_channels_and_everything_without_idle_retention() -> None:
    kept = memory_bus(IDLE_RETENTION=None)
    busy = memory_bus(IDLE_RETENTION=1.0)
    try:
        for bus in (kept, busy):
            await bus.apublish("a", 1)
        for _ in range(4):
            await asyncio.sleep(0.1)
            for bus in (kept, busy):
                await bus.apublish("a", 2)  # well within the retention each time
        for bus in (kept, busy):
            assert [e.message for e in await bus.ahistory("a")] == [1, 2, 2, 2, 2]
        await asyncio.sleep(1.1)
        for bus in (kept, busy):
            await bus.apublish("b", "sweeps")
        assert len(await kept.ahistory("a")) == 5
        assert await busy.ahistory("a") == []
    finally:
        await kept.aclose()
        await busy.aclose()


# -- Redis Streams ----------------------------------------------------------------


async def test_streams_each_publish_refreshes_the_time_to_live(admin: aioredis.Redis) -> None:
    bus = make_bus("redis-stream", OPTIONS={"IDLE_RETENTION": 60})
    forever = make_bus("redis-stream", OPTIONS={"IDLE_RETENTION": None})
    key, kept = f"{bus.config.key_prefix}:ttl", f"{forever.config.key_prefix}:ttl"
    try:
        await bus.apublish("ttl", 1)
        assert 59_000 < await admin.pttl(key) <= 60_000
        await admin.pexpire(key, 1000)
        await asyncio.gather(*(bus.apublish("ttl", i) for i in range(10)))  # one batch
        assert 59_000 < await admin.pttl(key) <= 60_000
        assert await admin.xlen(key) == 11
        await forever.apublish("ttl", 1)
        assert await admin.pttl(kept) == -1
    finally:
        await admin.delete(key, kept)
        await bus.aclose()
        await forever.aclose()


async def test_streams_an_expired_channel_is_a_gap_not_an_empty_replay(
    admin: aioredis.Redis,
) -> None:
    bus = make_bus("redis-stream", OPTIONS={"IDLE_RETENTION": 0.05})
    key = f"{bus.config.key_prefix}:short"
    try:
        last = await bus.apublish("short", 1)

        async def expired() -> bool:
            return not await admin.exists(key)

        await until(expired, "expiry of the idle stream")
        assert await bus.ahistory("short") == []
        assert await gap(bus, "short", last)
        assert not await gap(bus, "short", "0-0")  # nothing was ever dropped after zero
    finally:
        await admin.delete(key)
        await bus.aclose()


async def test_streams_an_entry_deleted_after_a_position_is_a_gap(admin: aioredis.Redis) -> None:
    """``XDEL`` (Redis >= 7 records the newest deleted id) makes earlier positions gaps;
    positions after it, and the oldest entry of a never-trimmed stream, stay exact."""
    bus = make_bus("redis-stream")
    key = f"{bus.config.key_prefix}:xdel"
    try:
        ids = [await bus.apublish("xdel", i) for i in range(5)]
        assert not await gap(bus, "xdel", "0-0")  # nothing dropped yet: all of it replays
        await admin.xdel(key, ids[2] or "")
        assert await gap(bus, "xdel", "0-0")
        assert await gap(bus, "xdel", ids[1])
        assert not await gap(bus, "xdel", ids[2])
        assert not await gap(bus, "xdel", ids[3])
    finally:
        await admin.delete(key)
        await bus.aclose()


@pytest.mark.parametrize(
    ("position", "retained"),
    [("0-0", False), ("5-0", False), ("9-0", True), ("12-0", True), ("20-0", True)],
)
def test_streams_before_redis_7_a_position_before_the_oldest_entry_is_a_gap(
    position: str, retained: bool
) -> None:
    """Redis 5 and 6 report neither entries-added nor max-deleted-entry-id: only a
    position at or after the oldest entry (or after the newest) is known to be safe."""
    redis6 = stream_ids.fields(
        [b"length", 3, b"last-generated-id", b"20-0", b"first-entry", [b"9-0", [b"data", b""]]]
    )
    order = stream_ids.stream_id_order(position, "RedisStreamBackend")
    assert stream_ids.retains(redis6, order) is retained


async def test_streams_publish_loads_its_script_when_the_server_forgot_it(
    private_redis: RedisServer,
) -> None:
    bus = make_bus("redis-stream", LOCATION=private_redis.url)
    try:
        async with bus.subscribe("s") as sub:
            for round_ in range(3):
                with private_redis.client() as client:
                    client.script_flush()
                ids = await asyncio.gather(*(bus.apublish("s", i) for i in range(5)))
                assert [(await sub.get(TIMEOUT)).id for _ in range(5)] == ids, round_
        assert bus.stats()["disconnects"] == 0
    finally:
        await bus.aclose()


async def test_streams_positions_at_the_end_of_the_id_space_read_nothing() -> None:
    """Reads after the largest ids send Redis nothing it refuses; through the bus such a
    position, never issued, is a gap."""
    bus = make_bus("redis-stream")
    largest = f"{2**64 - 1}-{2**64 - 1}"
    backend = RedisStreamBackend(bus.config)
    await backend.connect()
    try:
        await bus.apublish("end", 1)
        for position in (largest, f"{2**64 - 1}"):
            assert await backend.history("end", position, None) == []
            assert await backend.history("end", position, 5) == []
            assert await backend.history_page("end", position, 5) == []
            with pytest.raises(HistoryGap):
                await bus.ahistory("end", since=position)
        assert [e.message for e in await bus.ahistory("end", since="0")] == [1]
    finally:
        await backend.close()
        await bus.aclose()


# -- the option ---------------------------------------------------------------------


@pytest.mark.parametrize("backend", [MemoryBackend, RedisStreamBackend])
@pytest.mark.parametrize("value", [0, -1, "60", True, float("inf"), float("nan"), 10**10])
def test_idle_retention_is_checked(backend: type[BaseBackend], value: object) -> None:
    path = f"{backend.__module__}.{backend.__name__}"
    location = REDIS_URL if backend is RedisStreamBackend else ""
    entry = {"BACKEND": path, "LOCATION": location, "OPTIONS": {"IDLE_RETENTION": value}}
    with pytest.raises(ConfigError, match=r"OPTIONS\['IDLE_RETENTION'\] must be a number of"):
        create_broadcast("default", entry)


@pytest.mark.parametrize("backend", [MemoryBackend, RedisStreamBackend])
def test_idle_retention_defaults_to_a_day(backend: type[BaseBackend]) -> None:
    assert backend.default_options["IDLE_RETENTION"] == 86400
