"""BroadcastChannelLayer, on every backend of tests/support/backends.py.

The first part restates, in our words, the behaviour channels' in-memory layer
and channels_redis are tested for; then interop with the broadcast API, two
"hosts" (two separately built `Broadcast` fronts and layers on one backend),
consumers through ``WebsocketCommunicator``, several event loops, leaks and the
system checks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import re
import threading
import warnings
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_broadcaster import Broadcast, broadcasts
from django_broadcaster.layers import BroadcastChannelLayer, LayerClosed
from django_broadcaster.layers.checks import check_channel_layers

from .support.backends import make_bus
from .support.layer_consumers import (
    ROOM,
    ForgetfulConsumer,
    RoomConsumer,
    SyncRoomConsumer,
    app_for,
)
from .support.waiting import TIMEOUT, eventually, nothing_on, receive

T = TypeVar("T")
#: How long to wait before concluding that nothing arrives.


def upstream(bus: Broadcast) -> set[str]:
    """Channels the current loop's hub has subscribed at the backend."""
    return set(bus.hubs.current().upstream)


@pytest.fixture
async def layer(bus: Broadcast) -> AsyncIterator[BroadcastChannelLayer]:
    front = BroadcastChannelLayer(using=bus, capacity=3)
    yield front
    await front.close()


# -- what channels' own layers are held to -------------------------------------


async def test_send_receive(layer: BroadcastChannelLayer) -> None:
    await layer.send("test-channel-1", {"type": "test.message", "text": "Ahoy-hoy!"})
    message = await receive(layer, "test-channel-1")
    assert message == {"type": "test.message", "text": "Ahoy-hoy!"}


async def test_process_local_send_receive(layer: BroadcastChannelLayer) -> None:
    channel = await layer.new_channel()
    assert re.fullmatch(r"specific\.[0-9a-f]+![0-9a-f]+", channel)
    await layer.send(channel, {"type": "test.message", "text": "Local only please"})
    assert await receive(layer, channel) == {"type": "test.message", "text": "Local only please"}


def test_sync_send_receive_via_async_to_sync(backend_name: str) -> None:
    bus = make_bus(backend_name)
    layer = BroadcastChannelLayer(using=bus)
    try:
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.send)(channel, {"type": "test.message", "n": 1})
        assert async_to_sync(layer.receive)(channel) == {"type": "test.message", "n": 1}
        async_to_sync(layer.send)("test-channel-2", {"type": "test.message", "n": 2})
        assert async_to_sync(layer.receive)("test-channel-2") == {"type": "test.message", "n": 2}
        # Every call ran on the bridge loop: one hub, not one per call.
        assert len(bus.hubs) == 1
    finally:
        async_to_sync(layer.close)()
        bus.close()


async def test_a_layer_on_an_alias_follows_a_change_of_broadcast_backends() -> None:
    """When BROADCAST_BACKENDS changes, the alias's `Broadcast` is replaced (the old
    one marked retired); the layer moves to the new one on its next call, a
    receive() on a channel it already knows included."""
    memory = {"BACKEND": "django_broadcaster.backends.memory.MemoryBackend"}
    layer = BroadcastChannelLayer(using="default")
    try:
        with override_settings(BROADCAST_BACKENDS={"default": memory}):
            channel = await layer.new_channel()
            await layer.send(channel, {"type": "test.message", "n": 1})
            assert await receive(layer, channel) == {"type": "test.message", "n": 1}
            old = broadcasts["default"]
        with override_settings(BROADCAST_BACKENDS={"default": {**memory, "KEY_PREFIX": "b"}}):
            assert layer.using == "default" and broadcasts["default"].retired is False
            waiting = asyncio.ensure_future(receive(layer, channel))
            await asyncio.sleep(0)
            await layer.send(channel, {"type": "test.message", "n": 2})
            assert await waiting == {"type": "test.message", "n": 2}
        assert old.retired
    finally:
        await layer.close()


async def test_multi_send_receive_keeps_order(layer: BroadcastChannelLayer) -> None:
    for name in ("test-channel-3", await layer.new_channel()):
        for n in (1, 2, 3):
            await layer.send(name, {"type": f"message.{n}"})
        assert [(await receive(layer, name))["type"] for _ in range(3)] == [
            "message.1",
            "message.2",
            "message.3",
        ]


async def test_ordering_of_many_messages(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus, capacity=1000)
    channel = await layer.new_channel()
    await layer.group_add("ordered", channel)
    for n in range(200):
        await layer.send(channel, {"type": "direct", "n": n})
    await asyncio.gather(
        *(layer.group_send("ordered", {"type": "group", "n": n}) for n in range(200))
    )
    received = [await receive(layer, channel) for _ in range(400)]
    assert [m["n"] for m in received if m["type"] == "direct"] == list(range(200))
    assert [m["n"] for m in received if m["type"] == "group"] == list(range(200))
    await layer.close()


async def test_groups_basic(layer: BroadcastChannelLayer) -> None:
    one, two, three = [await layer.new_channel(prefix=f"test-gr-chan-{n}") for n in (1, 2, 3)]
    for channel in (one, two, three):
        await layer.group_add("test-group", channel)
    await layer.group_discard("test-group", two)
    await layer.group_send("test-group", {"type": "message.1"})
    assert (await receive(layer, one))["type"] == "message.1"
    assert (await receive(layer, three))["type"] == "message.1"
    assert await nothing_on(layer, two)


async def test_groups_of_normal_channel_names(layer: BroadcastChannelLayer) -> None:
    for channel in ("test-gr-chan-1", "test-gr-chan-2", "test-gr-chan-3"):
        await layer.group_add("test-group", channel)
    await layer.group_discard("test-group", "test-gr-chan-2")
    await layer.group_send("test-group", {"type": "message.1"})
    assert (await receive(layer, "test-gr-chan-1"))["type"] == "message.1"
    assert (await receive(layer, "test-gr-chan-3"))["type"] == "message.1"
    assert await nothing_on(layer, "test-gr-chan-2")


async def test_groups_same_prefix(layer: BroadcastChannelLayer) -> None:
    channels = [await layer.new_channel(prefix="test-gr-chan") for _ in range(3)]
    assert len(set(channels)) == 3
    for channel in channels:
        await layer.group_add("test-group", channel)
    await layer.group_send("test-group", {"type": "message.1"})
    for channel in channels:
        assert (await receive(layer, channel))["type"] == "message.1"


async def test_similar_group_names_stay_apart(layer: BroadcastChannelLayer) -> None:
    first, second = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("test-group", first)
    await layer.group_add("test-group-2", second)
    await layer.group_send("test-group-2", {"type": "message.2"})
    assert (await receive(layer, second))["type"] == "message.2"
    assert await nothing_on(layer, first)


async def test_group_send_drops_silently_for_a_full_member(
    layer: BroadcastChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="django_broadcaster.layers")
    full = await layer.new_channel(prefix="full")
    roomy = await layer.new_channel(prefix="roomy")
    await layer.group_add("test-group", full)
    await layer.group_add("test-group", roomy)
    await layer.send(full, {"type": "message.0"})  # capacity 3: room for two more
    for n in (1, 2, 3):
        await layer.group_send("test-group", {"type": f"message.{n}"})
    assert [(await receive(layer, roomy))["type"] for _ in range(3)] == [
        "message.1",
        "message.2",
        "message.3",
    ]
    assert [(await receive(layer, full))["type"] for _ in range(3)] == [
        "message.0",
        "message.1",
        "message.2",
    ]
    assert await nothing_on(layer, full)
    assert layer.status()["dropped_full"] == 1
    assert "1 of 2 channels over capacity in group test-group" in caplog.text


async def test_send_capacity(layer: BroadcastChannelLayer) -> None:
    channel = await layer.new_channel()
    for _ in range(3):
        await layer.send(channel, {"type": "test.message"})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "test.message"})
    # A normal channel that has a receiver here (here: a group member) is full too.
    await layer.group_add("test-group", "test-channel-1")
    for _ in range(3):
        await layer.send("test-channel-1", {"type": "test.message"})
    with pytest.raises(ChannelFull):
        await layer.send("test-channel-1", {"type": "test.message"})
    # Reading makes room again.
    await receive(layer, channel)
    await layer.send(channel, {"type": "test.message"})


async def test_a_normal_channel_queues_until_a_receiver_comes(layer: BroadcastChannelLayer) -> None:
    # Nobody receives "elsewhere" yet: the engine keeps the messages (up to capacity,
    # then ChannelFull) for whoever receives later, in order.
    for n in range(3):
        await layer.send("elsewhere", {"type": "job", "n": n})
    with pytest.raises(ChannelFull):
        await layer.send("elsewhere", {"type": "job", "n": 3})
    assert [(await receive(layer, "elsewhere"))["n"] for _ in range(3)] == [0, 1, 2]
    assert await nothing_on(layer, "elsewhere")


async def test_per_channel_capacity_with_globs_and_regexes(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(
        using=bus,
        capacity=3,
        channel_capacity={"one": 1, re.compile(r"^big\."): 5, "small.*": 2},
    )
    await layer.group_add("g", "one")
    await layer.send("one", {"type": "m"})
    with pytest.raises(ChannelFull):
        await layer.send("one", {"type": "m"})
    big = await layer.new_channel(prefix="big.")
    for _ in range(5):
        await layer.send(big, {"type": "m"})
    with pytest.raises(ChannelFull):
        await layer.send(big, {"type": "m"})
    small = await layer.new_channel(prefix="small.")
    for _ in range(2):
        await layer.send(small, {"type": "m"})
    with pytest.raises(ChannelFull):
        await layer.send(small, {"type": "m"})
    other = await layer.new_channel()
    for _ in range(3):
        await layer.send(other, {"type": "m"})
    with pytest.raises(ChannelFull):
        await layer.send(other, {"type": "m"})
    await layer.close()


async def test_message_expiry(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus, expiry=0.3)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "message.1"})
    await layer.send(channel, {"type": "message.2"})
    assert (await receive(layer, channel))["type"] == "message.1"
    await asyncio.sleep(0.4)
    await layer.send(channel, {"type": "message.3"})
    assert (await receive(layer, channel))["type"] == "message.3"
    assert await nothing_on(layer, channel)
    assert layer.status()["expired"] == 1
    # Group messages expire the same way.
    late, witness = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", late)
    await layer.group_add("g", witness)
    await layer.group_send("g", {"type": "message.4"})
    assert (await receive(layer, witness))["type"] == "message.4"  # delivered to both now
    await asyncio.sleep(0.4)
    assert await nothing_on(layer, late)
    await layer.close()


async def test_expired_messages_are_dropped_even_if_never_read(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus, expiry=0.2, capacity=2)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "m"})
    await layer.send("unread", {"type": "m"})
    await layer.send("unread", {"type": "m"})
    assert layer.status()["queued"] == 1
    await eventually(lambda: layer.status()["channels"] == 0)
    assert layer.status()["queued"] == 0
    # The engine's queue dropped its expired messages too: room for two new ones.
    await layer.send("unread", {"type": "new", "n": 1})
    await layer.send("unread", {"type": "new", "n": 2})
    assert (await receive(layer, "unread"))["n"] == 1
    await layer.close()


async def test_group_membership_expiry(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus, expiry=0.4, group_expiry=0.2)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    task = asyncio.create_task(layer.receive(channel))  # alive, but the membership ages
    await eventually(lambda: layer.status()["memberships"] == 0)
    assert "g" not in upstream(bus)
    await layer.group_send("g", {"type": "late"})
    await layer.send(channel, {"type": "direct"})
    assert (await asyncio.wait_for(task, TIMEOUT))["type"] == "direct"
    await layer.close()


async def test_flush(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus)
    channel = await layer.new_channel()
    pending = await layer.new_channel()
    waiting = asyncio.create_task(layer.receive(pending))
    await layer.group_add("g", channel)
    await layer.send(channel, {"type": "old"})
    await layer.send("normal", {"type": "old"})
    await layer.flush()
    status = layer.status()
    assert (status["groups"], status["memberships"], status["queued"]) == (0, 0, 0)
    assert status["channels"] == 1  # only the one a receive() waits on
    assert "g" not in upstream(bus)
    await layer.group_send("g", {"type": "after.flush"})
    assert await nothing_on(layer, channel)
    await layer.send(pending, {"type": "still.works"})
    assert (await asyncio.wait_for(waiting, TIMEOUT))["type"] == "still.works"
    await layer.close()


async def test_discard_before_add(layer: BroadcastChannelLayer) -> None:
    channel = await layer.new_channel()
    await layer.group_discard("test-group", channel)  # not a member: nothing happens
    await layer.group_add("test-group", channel)
    await layer.group_send("test-group", {"type": "message.1"})
    assert (await receive(layer, channel))["type"] == "message.1"


async def test_adding_twice_delivers_once(layer: BroadcastChannelLayer) -> None:
    channel = await layer.new_channel()
    await layer.group_add("test-group", channel)
    await layer.group_add("test-group", channel)
    await layer.group_send("test-group", {"type": "message.1"})
    assert (await receive(layer, channel))["type"] == "message.1"
    assert await nothing_on(layer, channel)


async def test_cancelled_receive_neither_blocks_nor_loses_messages(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus, capacity=500)
    channel = await layer.new_channel()
    sent, got = 0, []
    delay = 0.0
    while delay < 0.01:
        await layer.send(channel, {"type": "test.message", "n": sent})
        sent += 1
        task = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(delay)
        task.cancel()
        delay += 0.0001
        with contextlib.suppress(asyncio.CancelledError):
            got.append((await task)["n"])
    while len(got) < sent:
        got.append((await receive(layer, channel))["n"])
    assert got == list(range(sent))
    await layer.close()


async def test_channel_names_are_unique_after_random_seed(layer: BroadcastChannelLayer) -> None:
    random.seed(1)
    first = await layer.new_channel()
    random.seed(1)
    second = await layer.new_channel()
    assert first != second
    random.seed(1)
    other = BroadcastChannelLayer(using=layer.using)
    random.seed(1)
    third = await other.new_channel()
    assert first.split("!")[0] != third.split("!")[0]
    await other.close()


async def test_invalid_names_and_messages_are_refused(layer: BroadcastChannelLayer) -> None:
    with pytest.raises(TypeError):
        await layer.send("=+135!", {"type": "foom"})
    with pytest.raises(TypeError):
        await layer.receive("=+135!")
    with pytest.raises(TypeError):
        await layer.group_add("bad group", "chan")
    with pytest.raises(TypeError):
        await layer.group_send("x" * 100, {"type": "foom"})
    with pytest.raises(TypeError):
        await layer.send("chan", "not a dict")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="new_channel"):
        await layer.receive("not-client-prefix!local_part")
    with pytest.raises(TypeError, match="cannot be encoded"):
        await layer.send(await layer.new_channel(), {"type": "m", "value": object()})


async def test_messages_are_not_shared_between_receivers(layer: BroadcastChannelLayer) -> None:
    one, two = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", one)
    await layer.group_add("g", two)
    await layer.group_send("g", {"type": "m", "text": "hi"})
    first = await receive(layer, one)
    first.pop("text")
    assert await receive(layer, two) == {"type": "m", "text": "hi"}


# -- interop with the broadcast API ----------------------------------------------


async def test_group_send_reaches_a_plain_subscriber(
    bus: Broadcast, layer: BroadcastChannelLayer
) -> None:
    async with bus.subscribe("chat.lobby") as sub:
        await layer.group_send("chat.lobby", {"type": "chat.message", "text": "hi"})
        event = await sub.get(TIMEOUT)
    assert event.channel == "chat.lobby"
    assert event.message == {"type": "chat.message", "text": "hi"}


async def test_apublish_and_publish_reach_group_members(
    bus: Broadcast, layer: BroadcastChannelLayer
) -> None:
    channel = await layer.new_channel()
    await layer.group_add("chat.lobby", channel)
    await bus.apublish("chat.lobby", {"type": "chat.message", "text": "async view"})
    assert (await receive(layer, channel))["text"] == "async view"
    # A sync view, signal or thread.
    await asyncio.to_thread(bus.publish, "chat.lobby", {"type": "chat.message", "text": "sync"})
    assert (await receive(layer, channel))["text"] == "sync"
    # Something that is not a layer message is skipped, not delivered.
    await bus.apublish("chat.lobby", "just a string")
    assert await nothing_on(layer, channel)


# -- two hosts ---------------------------------------------------------------------


async def test_process_specific_send_between_hosts(hosts: list[Broadcast]) -> None:
    a, b = (BroadcastChannelLayer(using=front) for front in hosts)
    channel = await a.new_channel()
    await b.send(channel, {"type": "hello", "from": "b"})
    assert await receive(a, channel) == {"type": "hello", "from": "b"}
    with pytest.raises(ValueError):
        await b.receive(channel)  # only its own host can receive it
    await a.close()
    await b.close()


async def test_groups_span_hosts(hosts: list[Broadcast]) -> None:
    a, b = (BroadcastChannelLayer(using=front) for front in hosts)
    on_a, on_b = await a.new_channel(), await b.new_channel()
    await a.group_add("room", on_a)
    await b.group_add("room", on_b)
    await a.group_send("room", {"type": "from.a"})
    assert (await receive(a, on_a))["type"] == "from.a"
    assert (await receive(b, on_b))["type"] == "from.a"
    await b.group_discard("room", on_b)
    await a.group_send("room", {"type": "again"})
    assert (await receive(a, on_a))["type"] == "again"
    assert await nothing_on(b, on_b)
    await a.close()
    await b.close()


async def test_group_add_for_a_channel_of_another_host(hosts: list[Broadcast]) -> None:
    a, b = (BroadcastChannelLayer(using=front) for front in hosts)
    channel = await a.new_channel()
    await b.group_add("room", channel)  # b is, say, a WSGI view; a hosts the consumer
    await eventually(lambda: a.status()["memberships"] == 1)
    await b.group_send("room", {"type": "joined.remotely"})
    assert (await receive(a, channel))["type"] == "joined.remotely"
    await b.group_discard("room", channel)
    await eventually(lambda: a.status()["memberships"] == 0)
    await a.close()
    await b.close()


async def test_normal_channel_between_hosts(hosts: list[Broadcast]) -> None:
    worker, web = (BroadcastChannelLayer(using=front) for front in hosts)
    job = asyncio.create_task(worker.receive("thumbnails"))
    await eventually(lambda: worker.status()["subscriptions"] == 1)
    await web.send("thumbnails", {"type": "thumbnail.make", "id": 7})
    assert (await asyncio.wait_for(job, TIMEOUT))["id"] == 7
    await worker.close()
    await web.close()


@pytest.fixture
def layer_aliases(hosts: list[Broadcast]) -> Iterator[list[BroadcastChannelLayer]]:
    """Channel layers "host_a" and "host_b" for consumers, one per host."""
    layers = [BroadcastChannelLayer(using=front) for front in hosts]
    saved = dict(channel_layers.backends)
    channel_layers.set("host_a", layers[0])
    channel_layers.set("host_b", layers[1])
    yield layers
    channel_layers.backends = saved


@pytest.mark.parametrize("consumer", [RoomConsumer, SyncRoomConsumer])
async def test_consumers_on_two_hosts_chat(
    hosts: list[Broadcast], layer_aliases: list[BroadcastChannelLayer], consumer: type
) -> None:
    alice = WebsocketCommunicator(app_for("host_a", consumer), "/ws/chat/")
    bob = WebsocketCommunicator(app_for("host_b", consumer), "/ws/chat/")
    assert (await alice.connect(TIMEOUT))[0]
    assert (await bob.connect(TIMEOUT))[0]
    await alice.send_json_to({"text": "hi from a"})
    assert await alice.receive_json_from(TIMEOUT) == {"text": "hi from a"}
    assert await bob.receive_json_from(TIMEOUT) == {"text": "hi from a"}
    await bob.send_json_to({"text": "hi from b"})
    assert await alice.receive_json_from(TIMEOUT) == {"text": "hi from b"}
    assert await bob.receive_json_from(TIMEOUT) == {"text": "hi from b"}
    # A plain async view on either host, and a sync one.
    await hosts[0].apublish(ROOM, {"type": "chat.message", "text": "from a view"})
    await asyncio.to_thread(
        hosts[1].publish, ROOM, {"type": "chat.message", "text": "from a sync view"}
    )
    for client in (alice, bob):
        assert await client.receive_json_from(TIMEOUT) == {"text": "from a view"}
        assert await client.receive_json_from(TIMEOUT) == {"text": "from a sync view"}
    await alice.disconnect()
    await bob.disconnect()
    for front, layer in zip(hosts, layer_aliases, strict=True):
        assert layer.status()["memberships"] == 0
        assert ROOM not in upstream(front)
        await layer.close()


# -- leaks -------------------------------------------------------------------------


def backend_subscribers(front: Broadcast, channel: str) -> int | None:
    """How many subscriptions of ``channel`` the backend itself holds, where it says."""
    backend = front.hubs.current().backend
    store = getattr(backend, "_store", None)
    if store is not None:  # memory backend
        return len(store.subscribers.get(backend.wire_name(channel), ()))
    return None


async def numsub(front: Broadcast, channel: str) -> int | None:
    """``PUBSUB NUMSUB`` of ``channel`` for the Redis pub/sub backend, else ``None``."""
    backend = front.hubs.current().backend
    if "redis" not in type(backend).__module__ or backend.supports_history:
        return None
    import redis.asyncio as redis

    client = redis.Redis.from_url(backend.location)
    try:
        counts = await client.pubsub_numsub(backend.wire_name(channel))
    finally:
        await client.aclose()
    return int(counts[0][1])


@pytest.mark.parametrize("consumer", [RoomConsumer, ForgetfulConsumer])
async def test_thousand_connects_and_disconnects_leave_nothing_behind(
    backend_name: str, hosts: list[Broadcast], consumer: type
) -> None:
    front = hosts[0]
    layer = BroadcastChannelLayer(using=front, expiry=0.5)
    saved = dict(channel_layers.backends)
    channel_layers.set("leaky", layer)
    app = app_for("leaky", consumer)
    try:
        for _ in range(10):
            clients = [WebsocketCommunicator(app, "/ws/chat/") for _ in range(100)]
            for client in clients:
                assert (await client.connect(TIMEOUT))[0]
            # Forgetful consumers of earlier rounds stay members until they go idle.
            memberships = layer.status()["memberships"]
            assert memberships == 100 if consumer is RoomConsumer else memberships >= 100
            assert ROOM in upstream(front)
            assert await numsub(front, ROOM) in (1, None)  # one, for 100 members
            await hosts[1].apublish(ROOM, {"type": "chat.message", "text": "hi"})
            for client in clients:
                assert await client.receive_json_from(TIMEOUT) == {"text": "hi"}
            await asyncio.gather(*(client.disconnect() for client in clients))
        # Released at group_discard(), or (forgetful consumers) once idle for `expiry`.
        await eventually(lambda: layer.status()["channels"] == 0)
        status = layer.status()
        assert (status["groups"], status["memberships"], status["queued"]) == (0, 0, 0)
        state = layer._states.find(asyncio.get_running_loop())
        assert state is not None
        assert set(state.sinks) == {state.process_topic}
        hub = front.hubs.current()
        await eventually(lambda: set(hub.upstream) == {state.process_topic})
        assert set(hub.subscribers) == {state.process_topic}
        assert backend_subscribers(front, ROOM) in (0, None)
        assert await numsub(front, ROOM) in (0, None)
        if backend_name == "redis":
            assert await numsub(front, ROOM) == 0
        if backend_name == "memory":
            assert backend_subscribers(front, ROOM) == 0
    finally:
        await layer.close()
        channel_layers.backends = saved
    assert layer.status()["loops"] == 0
    assert set(front.hubs.current().upstream) == set()


async def test_cancelled_receive_releases_the_channel_once_idle(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus, expiry=0.3)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    await layer.group_add("h", channel)
    for _ in range(3):  # a poller that times out and comes back keeps everything
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(channel), 0.05)
    await layer.group_send("g", {"type": "kept"})
    assert (await receive(layer, channel))["type"] == "kept"
    task = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0.05)
    task.cancel()  # the consumer went away without group_discard()
    await eventually(lambda: layer.status()["channels"] == 0)
    assert layer.status()["memberships"] == 0
    await eventually(lambda: not {"g", "h"} & upstream(bus))
    await layer.close()


async def test_a_consumer_that_died_mid_message_is_released_once_its_messages_expire(
    bus: Broadcast,
) -> None:
    """Its last receive() returned (no receive was cancelled) and it never came back,
    group_discard() never ran: once a message expires unread in its queue, the channel
    and its memberships are released. A channel that keeps reading is not."""
    layer = BroadcastChannelLayer(using=bus, expiry=0.3)
    dead, alive = await layer.new_channel(), await layer.new_channel()
    for channel in (dead, alive):
        await layer.group_add("g", channel)
    await layer.group_send("g", {"type": "first"})
    for channel in (dead, alive):
        assert (await receive(layer, channel))["type"] == "first"
    await layer.group_send("g", {"type": "unread"})  # dead never reads it
    assert (await receive(layer, alive))["type"] == "unread"
    reader = asyncio.create_task(layer.receive(alive))  # alive waits for more
    await eventually(lambda: layer.status()["memberships"] == 1)
    assert layer.status()["channels"] == 1
    await layer.group_send("g", {"type": "later"})
    assert (await asyncio.wait_for(reader, TIMEOUT))["type"] == "later"
    await layer.close()


# -- event loops, threads, sync callers ---------------------------------------------


async def run_in_new_loop(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` in a new thread; fails (instead of hanging the suite)
    if that loop cannot shut down."""
    result: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            result.set_result(asyncio.run(coro))
        except BaseException as exc:
            result.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    try:
        return await asyncio.wait_for(asyncio.wrap_future(result), TIMEOUT)
    except asyncio.TimeoutError:
        pytest.fail("asyncio.run() did not return: its loop's tasks never finished cancelling")


async def test_several_event_loops_in_one_process(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)

    async def elsewhere() -> str:
        other = await layer.new_channel()
        await layer.send(channel, {"type": "from.other.loop"})  # runs on the owner's loop
        await layer.group_send("g", {"type": "group.from.other.loop"})
        await layer.send(other, {"type": "own"})
        assert (await layer.receive(other))["type"] == "own"
        return other

    other = await run_in_new_loop(elsewhere())
    assert (await receive(layer, channel))["type"] == "from.other.loop"
    assert (await receive(layer, channel))["type"] == "group.from.other.loop"
    await layer.send(channel, {"type": "still.here"})
    assert (await receive(layer, channel))["type"] == "still.here"
    # That loop is gone: the loop that uses its channel next adopts it.
    await layer.send(other, {"type": "adopted"})
    assert (await receive(layer, other))["type"] == "adopted"

    async def receive_there() -> dict[str, Any]:
        return await layer.receive(channel)  # owned by the test's loop

    waiting = asyncio.ensure_future(run_in_new_loop(receive_there()))
    await eventually(lambda: bool(layer._state().inboxes[channel].waiters))
    await layer.send(channel, {"type": "for.the.thread"})
    assert (await asyncio.wait_for(waiting, TIMEOUT))["type"] == "for.the.thread"
    await layer.close()


async def test_async_to_sync_group_send_from_threads(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus, capacity=200)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                async_to_sync(layer.group_send)("g", {"type": "m", "who": n, "i": i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        await asyncio.to_thread(thread.join)
    assert errors == []
    received = [await receive(layer, channel) for _ in range(100)]
    for n in range(4):
        assert [m["i"] for m in received if m["who"] == n] == list(range(25))
    # No loop (so no connection) per call: this test's loop and the bridge loop.
    assert len(bus.hubs) <= 2
    await layer.close()


async def test_close_ends_pending_receives_and_layer_is_reusable(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus)
    channel = await layer.new_channel()
    task = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0.05)
    await layer.close_pools()
    with pytest.raises(LayerClosed):
        await task
    again = await layer.new_channel()
    await layer.send(again, {"type": "m"})
    assert (await receive(layer, again))["type"] == "m"
    await layer.close()


async def test_layer_resubscribes_after_the_broadcast_is_closed(bus: Broadcast) -> None:
    layer = BroadcastChannelLayer(using=bus)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    await bus.aclose()
    assert layer.status()["subscriptions"] == 0
    await layer.new_channel()  # the next call re-subscribes
    await eventually(lambda: upstream(bus) >= {"g"})
    await layer.group_send("g", {"type": "after.reopen"})
    assert (await receive(layer, channel))["type"] == "after.reopen"
    await layer.close()


# -- configuration -----------------------------------------------------------------


def test_config_from_settings_and_checks() -> None:
    path = "django_broadcaster.layers.BroadcastChannelLayer"
    layers = {
        "ok": {"BACKEND": path, "CONFIG": {"using": "default", "capacity": 10}},
        "bad": {
            "BACKEND": path,
            "CONFIG": {"using": "nope", "capacity": 0, "symmetric_encryption_keys": ["k"]},
        },
        "redisish": {"BACKEND": path, "CONFIG": {"hosts": [("localhost", 6379)], "prefix": "x"}},
        "other": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"using": "?"}},
    }
    with override_settings(CHANNEL_LAYERS=layers):
        messages = check_channel_layers()
        assert channel_layers["ok"].capacity == 10
        with pytest.raises(ImproperlyConfigured, match="'nope'"):
            channel_layers.make_backend("bad")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            channel_layers.make_backend("redisish")
    assert sorted(str(w.message).split(":")[1] for w in caught) == [
        " CONFIG key 'hosts' is ignored",
        " CONFIG key 'prefix' is ignored",
    ]
    errors = sorted((m.id, m.msg) for m in messages if m.level >= 40)
    notes = sorted((m.id, m.msg) for m in messages if m.level < 40)
    assert [m for _, m in errors] == [
        "CHANNEL_LAYERS['bad']['CONFIG']: 'capacity' must be a whole number >= 1, not 0",
        "CHANNEL_LAYERS['bad']['CONFIG']: 'using' names 'nope', which is not a "
        "BROADCAST_BACKENDS alias",
        "CHANNEL_LAYERS['bad']['CONFIG']: symmetric_encryption_keys must be a non-empty "
        "list of secret keys (str or bytes, 16 characters or more), newest first",
    ]
    assert {i for i, _ in errors} == {"django_broadcaster.E010"}
    assert notes == [
        (
            "django_broadcaster.W001",
            "CHANNEL_LAYERS['redisish']['CONFIG']: CONFIG key 'hosts' is ignored",
        ),
        (
            "django_broadcaster.W001",
            "CHANNEL_LAYERS['redisish']['CONFIG']: CONFIG key 'prefix' is ignored",
        ),
    ]


class TunedLayer(BroadcastChannelLayer):
    """A project's subclass of the layer."""


def test_checks_cover_subclasses_of_the_layer() -> None:
    layers = {"tuned": {"BACKEND": f"{__name__}.TunedLayer", "CONFIG": {"capacity": 0}}}
    with override_settings(CHANNEL_LAYERS=layers):
        messages = check_channel_layers()
    assert [(m.id, m.msg) for m in messages] == [
        (
            "django_broadcaster.E010",
            "CHANNEL_LAYERS['tuned']['CONFIG']: 'capacity' must be a whole number >= 1, not 0",
        )
    ]


def test_unknown_config_keys_are_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="unknown CONFIG key"):
        BroadcastChannelLayer(capcity=10)
    with pytest.raises(ImproperlyConfigured, match="expiry"):
        BroadcastChannelLayer(expiry=0)
