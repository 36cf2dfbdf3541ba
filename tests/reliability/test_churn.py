"""Churn: subscribe/unsubscribe cycles cancelled at random points leak nothing.

On every backend, `CYCLES` subscriptions (1 to 3 channels out of a small set,
so channels are shared and handed over) are opened by tasks that publish,
read, wait or do nothing, and are cancelled after a random delay: while
subscribing, reading or leaving. Afterwards nothing is left: no subscriber or
upstream channel in ``stats()``, no task beyond those a single subscription
leaves (the hub's reader), and on the engine no subscription (``PUBSUB
NUMSUB``) and no more connections than one subscription uses (``CLIENT
LIST``, ``pg_stat_activity``).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from contextlib import suppress

import psycopg
import redis
from django.db import connection

from django_broadcaster import Broadcast
from django_broadcaster.config import create_broadcast
from tests.support.backends import CONFORMANCE_BACKENDS, POSTGRES_URL, REDIS_URL
from tests.support.waiting import TIMEOUT, eventually

from .scale import scaled

CYCLES = scaled(2000, 10_000)
#: Cycles running at once.
CONCURRENCY = 20
CHANNELS = [f"c{n}" for n in range(8)]


def make(backend_name: str, alias: str) -> Broadcast:
    entry = dict(CONFORMANCE_BACKENDS[backend_name])
    if backend_name == "postgres":
        database = connection.settings_dict["NAME"]
        entry["LOCATION"] = (
            f"postgresql://postgres@127.0.0.1:5432/{database}?application_name={alias}"
        )
    entry["KEY_PREFIX"] = alias
    return create_broadcast(alias, entry)


def connections_of(backend_name: str, alias: str) -> int:
    """How many connections the engine has from this alias (0 for memory)."""
    if backend_name.startswith("redis"):
        with redis.Redis.from_url(REDIS_URL) as client:
            return sum(
                1 for c in client.client_list() if c["name"] == f"django-broadcaster:{alias}"
            )
    if backend_name == "postgres":
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (alias,)
            ).fetchone()
        assert row is not None
        return int(row[0])
    return 0


def engine_subscriptions(backend_name: str, bus: Broadcast) -> int:
    """Subscriptions the engine holds for ``CHANNELS`` (Redis pub/sub; 0 elsewhere)."""
    if backend_name != "redis":
        return 0
    backend = bus.hubs.current().backend
    with redis.Redis.from_url(REDIS_URL) as client:
        counts = client.pubsub_numsub(*(backend.wire_name(c) for c in CHANNELS))
    return sum(count for _, count in counts)


async def cycle(bus: Broadcast, rng: random.Random) -> None:
    channels = rng.sample(CHANNELS, rng.randint(1, 3))
    action = rng.choice(["read", "wait", "nothing"])

    async def use() -> None:
        async with bus.subscribe(*channels) as sub:
            if action == "read":
                await bus.apublish(channels[0], "x")
                await sub.get(TIMEOUT)
            elif action == "wait":
                await sub.get(rng.random() * 0.01)

    task = asyncio.ensure_future(use())
    await asyncio.sleep(rng.random() * 0.01)  # cancelled wherever it is by then
    task.cancel()
    with suppress(asyncio.CancelledError, asyncio.TimeoutError):
        await task


async def settled(bus: Broadcast, backend_name: str, alias: str) -> tuple[int, int]:
    """Tasks and engine connections once this bus has no subscriber."""
    await eventually(lambda: bus.stats()["subscribers"] == 0)
    await eventually(lambda: bus.stats()["upstream_channels"] == 0)
    await asyncio.sleep(0.1)
    return len(asyncio.all_tasks()), connections_of(backend_name, alias)


async def test_churn_leaks_nothing(backend_name: str) -> None:
    alias = f"churn{uuid.uuid4().hex[:8]}"
    bus = make(backend_name, alias)
    rng = random.Random(alias)
    try:
        # One plain subscription first: what it leaves behind is the baseline.
        async with bus.subscribe(CHANNELS[0]) as sub:
            await bus.apublish(CHANNELS[0], "warm")
            await sub.get(TIMEOUT)
        tasks, connections = await settled(bus, backend_name, alias)
        for start in range(0, CYCLES, CONCURRENCY):
            batch = range(start, min(start + CONCURRENCY, CYCLES))
            await asyncio.gather(*(cycle(bus, rng) for _ in batch))
        left_tasks, left_connections = await settled(bus, backend_name, alias)
        stats = bus.stats()
        assert left_tasks <= tasks, [t for t in asyncio.all_tasks()]
        assert left_connections <= connections
        assert engine_subscriptions(backend_name, bus) == 0
        # Still works.
        async with bus.subscribe(CHANNELS[1]) as sub:
            await bus.apublish(CHANNELS[1], "still here")
            assert (await sub.get(TIMEOUT)).message == "still here"
    finally:
        await bus.aclose()
    assert stats["lagged"] == 0 and stats["disconnects"] == 0
