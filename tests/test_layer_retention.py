"""What the channel layer leaves in Redis Streams: group messages and messages to a
process's channels are gone ``expiry`` after the last one (not after the backend's
``IDLE_RETENTION``), and a closed layer removes its process channel's stream.
A normal channel's queue expires with its last message."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from django_broadcaster.backends.redis.queues import queue_key
from django_broadcaster.layers import BroadcastChannelLayer
from django_broadcaster.layers.names import PROCESS_TOPIC, QUEUE_TOPIC

from .support.backends import REDIS_URL, make_bus
from .support.waiting import TIMEOUT, receive


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Return once ``await check()`` is true; fail after `TIMEOUT` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not await check():
        assert loop.time() < deadline, "condition not met within TIMEOUT"
        await asyncio.sleep(0.05)


async def ttl_between(admin: aioredis.Redis, key: str, low: int, high: int) -> bool:
    return low <= await admin.pttl(key) <= high


async def gone(admin: aioredis.Redis, key: str) -> bool:
    return not await admin.exists(key)


@pytest.fixture
async def admin() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL, protocol=2)
    yield client
    await client.aclose()


async def test_group_messages_expire_with_the_layer_expiry(admin: aioredis.Redis) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    front = make_bus("redis-stream", KEY_PREFIX=prefix)  # IDLE_RETENTION: a day
    layer = BroadcastChannelLayer(using=front, expiry=2)
    member = await layer.new_channel()
    await layer.group_add("room", member)
    for n in range(3):
        await layer.group_send("room", {"type": "m", "n": n, "blob": "x" * 100_000})
    assert (await receive(layer, member))["n"] == 0
    key = f"{prefix}:room"
    assert await admin.pttl(key) > 2000  # the publish set the backend's retention
    await until(lambda: ttl_between(admin, key, 1, 2000))  # then the layer's expiry
    await until(lambda: gone(admin, key))
    await layer.close()
    await front.aclose()


async def test_a_closed_layer_removes_its_process_channel(admin: aioredis.Redis) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    fronts = [make_bus("redis-stream", KEY_PREFIX=prefix) for _ in range(2)]
    here, there = (BroadcastChannelLayer(using=front, expiry=60) for front in fronts)
    channel = await there.new_channel()
    await here.send(channel, {"type": "direct"})  # crosses the bus: another "host"
    assert (await receive(there, channel))["type"] == "direct"
    key = f"{prefix}:{PROCESS_TOPIC}{there.client_prefix}"
    assert await admin.exists(key)
    await there.close()
    assert not await admin.exists(key)
    await here.close()
    for front in fronts:
        await front.aclose()


@pytest.mark.parametrize("backend_name", ["redis", "redis-stream"])
async def test_a_normal_channels_queue_expires_with_its_last_message(
    admin: aioredis.Redis, backend_name: str
) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    front = make_bus(backend_name, KEY_PREFIX=prefix)
    layer = BroadcastChannelLayer(using=front, expiry=1)
    await layer.send("jobs", {"type": "m"})  # nobody receives it
    key = queue_key(f"{prefix}:{QUEUE_TOPIC}jobs")
    assert await admin.llen(key) == 1
    assert 0 < await admin.pttl(key) <= 1000
    await until(lambda: gone(admin, key))
    await layer.close()
    await front.aclose()
