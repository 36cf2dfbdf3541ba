"""A publish Redis refuses fails alone: the other publishes of its pipelined batch
go out, nothing is retried, nothing is logged as a lost connection.

Refusals are real: a key holding a string (``WRONGTYPE`` for Streams), an ACL
refusing a channel (``NOPERM`` for pub/sub, on a private ``redis-server``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError, ResponseError

from django_broadcaster import Broadcast

from .support.backends import REDIS_URL, make_bus
from .support.redis_servers import RedisServer

TIMEOUT = 10

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def acl_redis() -> Iterator[RedisServer]:
    """A private redis-server whose default user may use the channels ``p:ok.*`` only."""
    server = RedisServer("--user", "default", "on", "nopass", "~*", "&p:ok.*", "+@all")
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


async def publish_all(bus: Broadcast, channels: list[str]) -> list[object]:
    """Publish on each of ``channels`` concurrently (so they share pipelined batches);
    each one's id or exception, in order."""
    return await asyncio.gather(
        *(bus.apublish(channel, i) for i, channel in enumerate(channels)), return_exceptions=True
    )


def no_unretrieved_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    gc.collect()  # an exception never retrieved is logged when its future is collected
    assert "never retrieved" not in caplog.text


async def test_streams_a_key_holding_a_string_fails_only_its_own_publish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    bus = make_bus("redis-stream")
    admin = aioredis.Redis.from_url(REDIS_URL, protocol=2)
    taken = f"{bus.config.key_prefix}:taken"
    try:
        await admin.set(taken, "someone else's string")
        channels = ["fine"] * 20
        channels[10] = "taken"
        async with bus.subscribe("fine") as sub:
            results = await publish_all(bus, channels)
            refused = results.pop(10)
            assert all(isinstance(event_id, str) for event_id in results), results
            assert isinstance(refused, ResponseError)
            assert str(refused) == (
                f"cannot publish on channel 'taken': Redis key {taken!r} holds another type "
                "than a stream (WRONGTYPE); give the alias a KEY_PREFIX to keep broadcast "
                "streams apart from other data"
            )
            received = [await sub.get(TIMEOUT) for _ in range(19)]
        assert [e.id for e in received] == results
        stats = bus.stats()
        assert (stats["published"], stats["disconnects"], stats["reconnects"]) == (19, 0, 0)
        assert await admin.get(taken) == b"someone else's string"
        assert await admin.pttl(taken) == -1  # IDLE_RETENTION never touches another's key
        assert "lost its connection" not in caplog.text
        no_unretrieved_exceptions(caplog)
    finally:
        await admin.delete(taken)
        await bus.aclose()
        await admin.connection_pool.disconnect()


@pytest.mark.parametrize("idle_retention", [None, 60])
async def test_streams_one_refused_publish_alone_raises_too(idle_retention: int | None) -> None:
    """The single-publish path (nothing else in flight) raises the same error."""
    bus = make_bus("redis-stream", OPTIONS={"IDLE_RETENTION": idle_retention})
    admin = aioredis.Redis.from_url(REDIS_URL, protocol=2)
    taken = f"{bus.config.key_prefix}:taken"
    try:
        await admin.set(taken, "x")
        with pytest.raises(ResponseError, match=r"^cannot publish on channel 'taken'.*WRONGTYPE"):
            await bus.apublish("taken", 1)
        assert isinstance(await bus.apublish("fine", 2), str)
        assert bus.stats()["disconnects"] == 0
    finally:
        await admin.delete(taken, f"{bus.config.key_prefix}:fine")
        await bus.aclose()
        await admin.connection_pool.disconnect()


async def test_pubsub_a_channel_the_acl_refuses_fails_only_its_own_publish(
    acl_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    bus = make_bus("redis", LOCATION=acl_redis.url, KEY_PREFIX="p")
    try:
        channels = ["ok.fine"] * 20
        channels[10] = "denied"
        async with bus.subscribe("ok.fine") as sub:
            results = await publish_all(bus, channels)
            refused = results.pop(10)
            assert results == [None] * 19
            assert isinstance(refused, NoPermissionError)
            assert str(refused) == (
                "cannot publish on channel 'denied' ('p:denied' in Redis): this user has no "
                "permissions to access one of the channels used as arguments"
            )
            received = [await sub.get(TIMEOUT) for _ in range(19)]
        assert [e.message for e in received] == [i for i in range(20) if i != 10]
        stats = bus.stats()
        assert (stats["published"], stats["disconnects"], stats["reconnects"]) == (19, 0, 0)
        assert "lost its connection" not in caplog.text
        no_unretrieved_exceptions(caplog)
    finally:
        await bus.aclose()
