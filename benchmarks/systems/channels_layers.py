"""Django Channels layers: group_send to a group, receive() on each member channel.

A subscriber is what a consumer holds: a ``new_channel()`` name added to the
group whose name is the benchmark channel. Also used for our own layer.
"""

from __future__ import annotations

from functools import partial
from operator import itemgetter
from typing import Any

from ..scenarios import Receiver
from .base import REDIS_URL, Adapter

MESSAGE_TYPE = "bench.message"
# Large enough that no scenario hits a capacity limit (a full channel drops).
CAPACITY = 10_000_000
# redis-py >= 6 caps a pool at 100 connections by default; 100 concurrent
# group_send calls plus the reader need more (MaxConnectionsError otherwise).
HOSTS = [{"address": REDIS_URL, "max_connections": 1_000}]


class GroupMembership:
    """Async context manager: one new channel, member of one group."""

    __slots__ = ("group", "layer", "name")

    def __init__(self, layer: Any, group: str) -> None:
        self.layer = layer
        self.group = group
        self.name = ""

    async def __aenter__(self) -> GroupMembership:
        self.name = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.name)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.layer.group_discard(self.group, self.name)


class ChannelLayerAdapter(Adapter):
    def __init__(self, layer: Any, close: str | None = None) -> None:
        self.layer = layer
        self.close_method = close  # the layer's own clean-up coroutine, by name

    async def publish(self, channel: str, payload: str) -> None:
        await self.layer.group_send(channel, {"type": MESSAGE_TYPE, "text": payload})

    def subscribe(self, channel: str) -> GroupMembership:
        return GroupMembership(self.layer, channel)

    def receiver(self, handle: GroupMembership) -> Receiver:
        return partial(self.layer.receive, handle.name), itemgetter("text")

    async def send(self, channel: str, payload: str) -> None:
        await self.layer.send(channel, {"type": MESSAGE_TYPE, "text": payload})

    def queue_receiver(self, channel: str) -> Receiver:
        return partial(self.layer.receive, channel), itemgetter("text")

    async def close(self) -> None:
        if self.close_method:
            await getattr(self.layer, self.close_method)()


# A missing library raises ImportError, which run_one reports as "not available".


def core() -> Adapter:
    from channels_redis.core import RedisChannelLayer

    return ChannelLayerAdapter(RedisChannelLayer(hosts=HOSTS, capacity=CAPACITY), "close_pools")


def pubsub() -> Adapter:
    from channels_redis.pubsub import RedisPubSubChannelLayer

    return ChannelLayerAdapter(RedisPubSubChannelLayer(hosts=HOSTS), "flush")


def inmemory() -> Adapter:
    from channels.layers import InMemoryChannelLayer

    return ChannelLayerAdapter(InMemoryChannelLayer(capacity=CAPACITY))
