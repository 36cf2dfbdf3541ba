"""Behaviour DESIGN.md promises, checked once against every backend (see tests/backends.py)."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import threading
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.utils.functional import lazy

from django_broadcaster import (
    Broadcast,
    Event,
    HistoryNotSupported,
    InvalidChannelName,
    SubscriberLagged,
)

from .conftest import make_bus

TIMEOUT = 10


def upstream(bus: Broadcast) -> set[str]:
    """Channels the current loop's hub has subscribed at the backend."""
    return set(bus.hubs.current().upstream)


async def drain(sub, count: int) -> list[Event]:
    return [await sub.get(TIMEOUT) for _ in range(count)]


async def test_round_trip(bus: Broadcast) -> None:
    async with bus.subscribe("chat.lobby") as sub:
        event_id = await bus.apublish("chat.lobby", {"type": "chat.message", "text": "hi"})
        event = await sub.get(TIMEOUT)
    assert event == Event("chat.lobby", {"type": "chat.message", "text": "hi"}, event_id)
    assert (event_id is not None) == bus.supports_history


async def test_json_values_use_djangos_encoder(bus: Broadcast) -> None:
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    ident = uuid.UUID(int=7)
    lazy_text = lazy(lambda: "lazy", str)()
    async with bus.subscribe("values") as sub:
        await bus.apublish("values", [when, decimal.Decimal("1.10"), ident, lazy_text, None])
        event = await sub.get(TIMEOUT)
    assert event.message == ["2026-01-02T03:04:05Z", "1.10", str(ident), "lazy", None]


async def test_many_local_subscribers_share_one_upstream_subscription(bus: Broadcast) -> None:
    calls: list[object] = []
    async with bus.subscribe("warmup"):
        pass
    backend = bus.hubs.current().backend
    original = backend.subscribe

    async def counting_subscribe(positions):  # type: ignore[no-untyped-def]
        calls.append(dict(positions))
        return await original(positions)

    backend.subscribe = counting_subscribe  # type: ignore[method-assign]
    subs = [bus.subscribe("crowd") for _ in range(200)]
    await asyncio.gather(*(s.__aenter__() for s in subs))
    try:
        assert calls == [{"crowd": None}]
        await bus.apublish("crowd", 1)
        await bus.apublish("crowd", 2)
        for s in subs:
            assert [e.message for e in await drain(s, 2)] == [1, 2]
    finally:
        await asyncio.gather(*(s.__aexit__(None, None, None) for s in subs))
    assert "crowd" not in upstream(bus)


async def test_several_channels_in_one_subscription(bus: Broadcast) -> None:
    async with bus.subscribe("a", "b", "c") as sub:
        await bus.apublish("b", "to b")
        await bus.apublish("other", "nobody")
        await bus.apublish("a", "to a")
        await bus.apublish("c", "to c")
        events = await drain(sub, 3)
        assert sub.pending == 0
    assert sorted((e.channel, e.message) for e in events) == [
        ("a", "to a"),
        ("b", "to b"),
        ("c", "to c"),
    ]


async def test_ordering_from_one_publisher(bus: Broadcast) -> None:
    async with bus.subscribe("ordered") as sub:
        for i in range(300):
            await bus.apublish("ordered", i)
        assert [e.message for e in await drain(sub, 300)] == list(range(300))


async def test_concurrent_publishers_are_all_delivered(bus: Broadcast) -> None:
    async with bus.subscribe("busy") as sub:
        ids = await asyncio.gather(*(bus.apublish("busy", i) for i in range(500)))
        events = await drain(sub, 500)
    assert sorted(e.message for e in events) == list(range(500))
    if bus.supports_history:
        assert len(set(ids)) == 500
        # Concurrent publishes are still sent in the order they were made.
        assert [e.message for e in events] == list(range(500))


@pytest.mark.parametrize("how", ["normally", "exception", "cancellation"])
async def test_leaving_the_block_unsubscribes(bus: Broadcast, how: str) -> None:
    entered = asyncio.Event()

    async def listener() -> None:
        async with bus.subscribe("leave") as sub:
            entered.set()
            if how == "exception":
                raise RuntimeError("boom")
            if how == "cancellation":
                await sub.get()

    task = asyncio.ensure_future(listener())
    await asyncio.wait_for(entered.wait(), TIMEOUT)
    if how == "cancellation":
        task.cancel()
    with pytest.raises((RuntimeError, asyncio.CancelledError)) if how != "normally" else _noop():
        await task
    assert "leave" not in upstream(bus)
    assert "leave" not in bus.hubs.current().subscribers


class _noop:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def test_concurrent_subscribe_and_unsubscribe_of_one_channel(bus: Broadcast) -> None:
    """encode/broadcaster loses the first subscriber when two subscribe at once."""
    first, second = bus.subscribe("race"), bus.subscribe("race")
    await asyncio.gather(first.__aenter__(), second.__aenter__())
    try:
        await bus.apublish("race", "both")
        assert (await first.get(TIMEOUT)).message == "both"
        assert (await second.get(TIMEOUT)).message == "both"
        # One leaves while a third joins: the channel must stay subscribed.
        third = bus.subscribe("race")
        await asyncio.gather(second.__aexit__(None, None, None), third.__aenter__())
        await bus.apublish("race", "still")
        assert (await first.get(TIMEOUT)).message == "still"
        assert (await third.get(TIMEOUT)).message == "still"
        await third.__aexit__(None, None, None)
    finally:
        await first.__aexit__(None, None, None)
    assert "race" not in upstream(bus)


async def test_churn_leaves_nothing_behind(bus: Broadcast) -> None:
    for _ in range(50):
        subs = [bus.subscribe(f"churn.{i % 5}") for i in range(10)]
        await asyncio.gather(*(s.__aenter__() for s in subs))
        await asyncio.gather(*(s.__aexit__(None, None, None) for s in subs))
    hub = bus.hubs.current()
    assert hub.subscribers == {}
    assert hub.upstream == set()
    async with bus.subscribe("churn.0") as sub:
        await bus.apublish("churn.0", "alive")
        assert (await sub.get(TIMEOUT)).message == "alive"


async def test_lagging_subscriber(backend_name: str) -> None:
    bus = make_bus(backend_name, OPTIONS={"MAX_QUEUE": 5})
    try:
        async with bus.subscribe("lag") as slow, bus.subscribe("lag") as fast:
            received = []
            for i in range(20):
                await bus.apublish("lag", i)
                received.append((await fast.get(TIMEOUT)).message)
            assert received == list(range(20))
            got = [e.message for e in await drain(slow, 5)]
            assert got == [0, 1, 2, 3, 4]
            with pytest.raises(SubscriberLagged) as info:
                await slow.get(TIMEOUT)
            assert slow.pending == 0
            lagged = info.value
            assert lagged.last_ids["lag"] == slow.last_ids["lag"]
            if bus.supports_history:
                # Resubscribing with since= picks up exactly where it fell behind.
                async with bus.subscribe("lag", since=lagged.since) as again:
                    assert [e.message for e in await drain(again, 15)] == list(range(5, 20))
            assert bus.stats()["lagged"] == 1
    finally:
        await bus.aclose()


async def test_invalid_channel_names_raise(bus: Broadcast) -> None:
    for name in ["", "a" * 201, "spaces here", "ünï", "new\nline", "a/b", None, 5]:
        with pytest.raises(InvalidChannelName, match="invalid channel name"):
            await bus.apublish(name, "x")  # type: ignore[arg-type]
        with pytest.raises(InvalidChannelName):
            bus.subscribe("ok", name)  # type: ignore[arg-type]
    assert isinstance(InvalidChannelName("x"), ValueError)
    async with bus.subscribe("A-z_0.9:x" + "y" * 191) as sub:
        await bus.apublish("A-z_0.9:x" + "y" * 191, "longest")
        assert (await sub.get(TIMEOUT)).message == "longest"


async def test_unencodable_message_raises_type_error_and_sends_nothing(bus: Broadcast) -> None:
    async with bus.subscribe("enc") as sub:
        with pytest.raises(TypeError, match=r"cannot publish on 'enc'.*nothing was sent"):
            await bus.apublish("enc", {"obj": object()})
        with pytest.raises(TypeError):
            bus.publish("enc", {1, 2})
        await bus.apublish("enc", "after")
        assert (await sub.get(TIMEOUT)).message == "after"
    if bus.supports_history:
        assert [e.message for e in await bus.ahistory("enc")] == ["after"]


async def test_sync_publish_from_threads(bus: Broadcast) -> None:
    async with bus.subscribe("threads") as sub:

        def worker(n: int) -> None:
            for i in range(25):
                bus.publish("threads", [n, i])

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        await asyncio.to_thread(
            lambda: [t.start() for t in threads] and [t.join() for t in threads]
        )
        events = await drain(sub, 200)
    for n in range(8):
        # Per publisher (thread), order is kept.
        assert [e.message[1] for e in events if e.message[0] == n] == list(range(25))


async def test_async_to_sync_publish_from_a_plain_thread(bus: Broadcast) -> None:
    async with bus.subscribe("a2s") as sub:

        def worker() -> None:
            for i in range(5):
                async_to_sync(bus.apublish)("a2s", i)

        await asyncio.to_thread(worker)
        assert [e.message for e in await drain(sub, 5)] == list(range(5))


async def test_close_ends_waiting_subscribers(bus: Broadcast) -> None:
    """encode/broadcaster leaves subscribers waiting forever after disconnect()."""
    async with bus.subscribe("closing") as sub:
        waiter = asyncio.ensure_future(sub.get(TIMEOUT))
        await asyncio.sleep(0.05)
        await bus.aclose()
        with pytest.raises(StopAsyncIteration):
            await waiter


async def test_history_is_refused_clearly_without_history(plain_bus: Broadcast) -> None:
    # At subscribe() time, before anything is connected or subscribed.
    with pytest.raises(HistoryNotSupported, match="keeps no history"):
        plain_bus.subscribe("h", history=3)
    with pytest.raises(HistoryNotSupported):
        plain_bus.subscribe("h", since="1-0")
    with pytest.raises(HistoryNotSupported):
        await plain_bus.ahistory("h")
    assert plain_bus.hubs.current().subscribers == {}


async def test_history_and_replay(history_bus: Broadcast) -> None:
    bus = history_bus
    ids = [await bus.apublish("h", i) for i in range(10)]
    assert [e.message for e in await bus.ahistory("h")] == list(range(10))
    assert [e.message for e in await bus.ahistory("h", limit=3)] == [7, 8, 9]
    assert [e.message for e in await bus.ahistory("h", since=ids[5])] == [6, 7, 8, 9]
    assert [e.id for e in await bus.ahistory("h", since=ids[5], limit=2)] == ids[8:]
    assert await bus.ahistory("never.used") == []
    assert [e.message for e in await asyncio.to_thread(bus.history, "h", limit=2)] == [8, 9]
    async with bus.subscribe("h", history=3) as sub:
        await bus.apublish("h", 10)
        assert [e.message for e in await drain(sub, 4)] == [7, 8, 9, 10]
    async with bus.subscribe("h", since=ids[7]) as sub:
        assert [e.message for e in await drain(sub, 3)] == [8, 9, 10]


async def test_replay_seam_has_no_gap_and_no_duplicate(history_bus: Broadcast) -> None:
    """Events published while the history is being read appear exactly once, in order."""
    bus = history_bus
    first = await bus.apublish("seam", 0)
    stop = asyncio.Event()
    published: list[int] = []

    async def publisher() -> None:
        i = 1
        while not stop.is_set() and i < 400:
            await bus.apublish("seam", i)
            published.append(i)
            i += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(publisher())
    await asyncio.sleep(0.01)
    async with bus.subscribe("seam", since=first) as sub:
        await asyncio.sleep(0.05)
        stop.set()
        await task
        got = [e.message for e in await drain(sub, len(published))]
        assert sub.pending == 0
    assert got == published


async def test_several_channels_with_since_mapping(history_bus: Broadcast) -> None:
    bus = history_bus
    a = await bus.apublish("m.a", "a0")
    await bus.apublish("m.a", "a1")
    await bus.apublish("m.b", "b0")
    async with bus.subscribe("m.a", "m.b", since={"m.a": a}) as sub:
        await bus.apublish("m.b", "b1")
        events = await drain(sub, 2)
    assert [e.message for e in events] == ["a1", "b1"]
    with pytest.raises(ValueError, match="mapping"):
        bus.subscribe("m.a", "m.b", since=a)
    with pytest.raises(ValueError, match="not subscribed"):
        bus.subscribe("m.a", since={"m.c": a})


async def test_msgpack_serializer_carries_bytes(backend_name: str) -> None:
    bus = make_bus(backend_name, OPTIONS={"SERIALIZER": "msgpack"})
    try:
        async with bus.subscribe("bin") as sub:
            await bus.apublish("bin", {"raw": b"\x00\xff", "n": 1})
            assert (await sub.get(TIMEOUT)).message == {"raw": b"\x00\xff", "n": 1}
    finally:
        await bus.aclose()
