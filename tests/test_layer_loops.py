"""Process-specific channels from any event loop of their process, on every backend:
what channels_redis's test_double_receive, test_send_receive_sync,
test_multi_send_receive_sync and test_multi_event_loop_garbage_collection check,
plus loops that closed with messages waiting."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync

from django_broadcaster import Broadcast
from django_broadcaster.layers import BroadcastChannelLayer

from .support.backends import make_bus
from .support.waiting import TIMEOUT


@pytest.fixture
def front(backend_name: str) -> Iterator[Broadcast]:
    bus = make_bus(backend_name)
    yield bus
    bus.close()


def test_close_pools_between_send_and_receive_loses_nothing(front: Broadcast) -> None:
    """Each call its own ``async_to_sync``, with ``close_pools()`` after each."""
    layer = BroadcastChannelLayer(using=front, capacity=3)

    async def send_and_close(channel: str, message: dict[str, str]) -> None:
        await layer.send(channel, message)
        await layer.close_pools()

    async def receive_and_close(channel: str) -> str:
        message = await asyncio.wait_for(layer.receive(channel), TIMEOUT)
        await layer.close_pools()
        return str(message["type"])

    first = async_to_sync(layer.new_channel)()
    second = async_to_sync(layer.new_channel)()
    async_to_sync(send_and_close)(first, {"type": "message.1"})
    async_to_sync(send_and_close)(second, {"type": "message.2"})
    assert layer.status()["parked"] == 2
    assert async_to_sync(receive_and_close)(second) == "message.2"
    assert async_to_sync(receive_and_close)(first) == "message.1"
    assert layer.status()["parked"] == 0
    async_to_sync(layer.flush)()


def test_plain_event_loops_and_async_to_sync_share_channels(front: Broadcast) -> None:
    """A channel made on a loop run with ``run_until_complete``, sent to from
    ``async_to_sync`` (a new loop each time, or the bridge loop), received on the
    first loop between two of its runs."""
    layer = BroadcastChannelLayer(using=front)
    loop = asyncio.new_event_loop()
    try:
        channel = loop.run_until_complete(layer.new_channel())
        async_to_sync(layer.send, force_new_loop=True)(channel, {"type": "m.0"})
        send = async_to_sync(layer.send)
        send(channel, {"type": "m.1"})
        send(channel, {"type": "m.2"})
        received = [
            loop.run_until_complete(asyncio.wait_for(layer.receive(channel), TIMEOUT))["type"]
            for _ in range(3)
        ]
        assert received == ["m.0", "m.1", "m.2"]
        loop.run_until_complete(layer.close())
    finally:
        loop.close()


def test_a_loop_that_closed_hands_its_channels_on(front: Broadcast) -> None:
    """Messages waiting on a channel of a loop that closed without ``close()`` are
    received by the loop that uses the channel next, and states of closed loops
    do not pile up."""
    layer = BroadcastChannelLayer(using=front)

    async def make_and_fill() -> str:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "left.behind"})
        return channel

    channels: list[str] = []

    def in_a_thread() -> None:
        channels.append(asyncio.run(make_and_fill()))

    for _ in range(3):
        thread = threading.Thread(target=in_a_thread)
        thread.start()
        thread.join(TIMEOUT)
    assert len(channels) == 3

    async def take_all() -> list[str]:
        return [
            (await asyncio.wait_for(layer.receive(channel), TIMEOUT))["type"]
            for channel in channels
        ]

    assert asyncio.run(take_all()) == ["left.behind"] * 3
    assert layer.status()["loops"] <= 1
    async_to_sync(layer.close)()


def test_channel_names_and_client_prefixes_survive_random_seed() -> None:
    random.seed(1)
    first = BroadcastChannelLayer(using=make_bus("memory"))
    random.seed(1)
    second = BroadcastChannelLayer(using=make_bus("memory"))
    assert first.client_prefix != second.client_prefix
