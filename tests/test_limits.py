"""Limits on what a publisher can push through the bus: size and strict JSON.

Each runs on real engines where it matters: a value refused at publish never
reaches the engine, and a hostile payload injected straight into the engine is
skipped (counted as undecodable) while later good events still arrive.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from django_broadcaster import MessageTooLarge

from .support.backends import REDIS_URL, make_bus

TIMEOUT = 10


@pytest.mark.parametrize("name", ["memory", "redis", "redis-stream", "postgres"])
async def test_a_message_over_max_message_bytes_is_refused_before_sending(name: str) -> None:
    bus = make_bus(name, OPTIONS={"MAX_MESSAGE_BYTES": 1000})
    try:
        async with bus.subscribe("big") as sub:
            with pytest.raises(MessageTooLarge, match=r"MAX_MESSAGE_BYTES.*nothing was sent") as e:
                await bus.apublish("big", "x" * 1000)  # 1,002 bytes as JSON
            assert isinstance(e.value, ValueError)  # as the docs promise
            await bus.apublish("big", "x" * 998)  # exactly 1,000 bytes
            assert len((await sub.get(TIMEOUT)).message) == 998
        assert bus.stats()["published"] == 1
    finally:
        await bus.aclose()


def test_max_message_bytes_has_a_safe_default_and_is_checked() -> None:
    assert make_bus("memory").max_message_bytes == 1024 * 1024
    with pytest.raises(Exception, match=r"OPTIONS\['MAX_MESSAGE_BYTES'\] must be a whole number"):
        make_bus("memory", OPTIONS={"MAX_MESSAGE_BYTES": "1MB"})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
async def test_nan_and_infinities_are_refused_at_publish(value: float) -> None:
    bus = make_bus("memory")
    try:
        with pytest.raises(ValueError, match="cannot publish on 'numbers'"):
            await bus.apublish("numbers", {"value": value})
        assert bus.stats()["published"] == 0
    finally:
        await bus.aclose()


async def test_nan_injected_into_redis_is_skipped_and_later_events_arrive() -> None:
    """A browser's JSON.parse refuses NaN: such a payload must never reach an SSE
    client, so the receiving side treats it as undecodable."""
    bus = make_bus("redis")
    admin = aioredis.Redis.from_url(REDIS_URL, protocol=2)
    try:
        async with bus.subscribe("numbers") as sub:
            wire = f"{bus.config.key_prefix}:numbers"
            for hostile in (b'{"v":NaN}', b"Infinity", b"[-Infinity]"):
                await admin.publish(wire, hostile)
            await bus.apublish("numbers", {"v": 1})
            assert (await sub.get(TIMEOUT)).message == {"v": 1}
        assert bus.stats()["undecodable"] == 3
    finally:
        await admin.connection_pool.disconnect()
        await bus.aclose()
