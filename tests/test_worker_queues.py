"""Normal channel names are work queues shared by every process (Channels' spec:
FIFO, and only one reader gets each message): ``runworker``-style processes,
receivers cancelled at random while messages flow, and what channels_redis's
core layer is tested for about normal channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from django.conf import settings

from django_broadcaster import Broadcast, QueuesNotSupported
from django_broadcaster.config import create_broadcast
from django_broadcaster.layers import BroadcastChannelLayer

from .support.backends import CONFORMANCE_BACKENDS, make_bus
from .support.waiting import eventually, nothing_on, receive
from .thirdparty import loopback

#: The backends another process can share (the memory backend is per process).
SHARED = ["redis", "redis-stream", "postgres"]


def shared_entry(backend_name: str) -> dict[str, Any]:
    """A ``BROADCAST_BACKENDS`` entry another process can use, with a fresh prefix."""
    entry: dict[str, Any] = {
        **CONFORMANCE_BACKENDS[backend_name],
        "KEY_PREFIX": f"w{uuid.uuid4().hex[:12]}",
    }
    if backend_name == "postgres":  # the test database, by URL
        db = settings.DATABASES["default"]
        entry["LOCATION"] = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return entry


async def start_worker(entry: dict[str, Any], channel: str) -> asyncio.subprocess.Process:
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.queue_worker",
        json.dumps(entry),
        channel,
        stdout=asyncio.subprocess.PIPE,
    )
    assert worker.stdout is not None
    line = await asyncio.wait_for(worker.stdout.readline(), 60)
    assert line == b"ready\n", line
    return worker


async def finished(worker: asyncio.subprocess.Process) -> list[int]:
    """The message numbers ``worker`` printed until it stopped."""
    out, _ = await asyncio.wait_for(worker.communicate(), 120)
    assert worker.returncode == 0
    return [int(line) for line in out.split()]


@pytest.mark.parametrize("backend_name", SHARED)
async def test_two_worker_processes_take_each_message_exactly_once(backend_name: str) -> None:
    """``runworker`` twice: 1,000 jobs, the first half sent before either worker
    started; every job is done once, by one of them, and both work."""
    entry = shared_entry(backend_name)
    front = create_broadcast("default", entry)
    sender = BroadcastChannelLayer(using=front, capacity=2000)
    workers: list[asyncio.subprocess.Process] = []
    try:
        for n in range(500):
            await sender.send("jobs", {"type": "job", "n": n, "work": 0.002})
        workers = [await start_worker(entry, "jobs") for _ in range(2)]
        for n in range(500, 1000):
            await sender.send("jobs", {"type": "job", "n": n, "work": 0.002})
        for _ in workers:
            await sender.send("jobs", {"type": "stop"})
        done = [await finished(worker) for worker in workers]
    finally:
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.kill()
        await sender.close()
        await front.aclose()
    assert sorted(done[0] + done[1]) == list(range(1000)), "each job done exactly once"
    assert all(len(jobs) >= 50 for jobs in done), [len(jobs) for jobs in done]
    # Each worker took the jobs in the order they were sent.
    assert all(jobs == sorted(jobs) for jobs in done)


async def test_receivers_cancelled_at_random_lose_and_repeat_nothing(backend_name: str) -> None:
    """10,000 messages; eight receivers on two "hosts" are cancelled at random moments
    (as Channels cancels ``receive()`` when a consumer stops), some right as a
    message is handed to them: every message arrives exactly once."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    # Not waiting for each commit's WAL flush: this is about receivers, not durability.
    options = {"SYNCHRONOUS_COMMIT": False} if backend_name == "postgres" else {}
    fronts = [make_bus(backend_name, KEY_PREFIX=prefix, OPTIONS=options) for _ in range(2)]
    layers = [BroadcastChannelLayer(using=front, capacity=1000) for front in fronts]
    total = 10_000
    got: list[int] = []
    rng = random.Random(7)
    # Up to a few round trips to the engine: long enough for some receives to get a
    # message, short enough that many are cancelled while one is on its way.
    window = 0.02 if backend_name == "postgres" else 0.004

    async def receiver(layer: BroadcastChannelLayer) -> None:
        while len(got) < total:
            task = asyncio.ensure_future(layer.receive("stress"))
            await asyncio.wait({task}, timeout=rng.uniform(0, window))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                got.append((await task)["n"])

    receivers = [asyncio.ensure_future(receiver(layers[i % 2])) for i in range(8)]
    try:
        for start in range(0, total, 100):
            # At most 1,000 waiting: the test is about receivers, not a deep queue.
            await eventually(lambda: start - len(got) < 900, timeout=60)  # noqa: B023
            await asyncio.gather(
                *(
                    layers[n % 2].send("stress", {"type": "m", "n": n})
                    for n in range(start, start + 100)
                )
            )
        with contextlib.suppress(AssertionError, pytest.fail.Exception):
            await eventually(lambda: len(got) >= total, timeout=120)
    finally:
        for task in receivers:
            task.cancel()
        await asyncio.gather(*receivers, return_exceptions=True)
    assert len(got) == total, f"{len(got)} received, {len(set(got))} distinct"
    assert sorted(got) == list(range(total))
    for layer in layers:
        assert await nothing_on(layer, "stress")
        await layer.close()
    for front in fronts:
        await front.aclose()


async def test_a_message_sent_while_nobody_receives_waits_for_a_receiver(
    hosts: list[Broadcast],
) -> None:
    web, worker = (BroadcastChannelLayer(using=front) for front in hosts)
    await web.send("thumbnails", {"type": "thumbnail.make", "id": 1})
    await asyncio.sleep(0.2)  # nobody receives yet
    assert (await receive(worker, "thumbnails"))["id"] == 1
    assert await nothing_on(web, "thumbnails")
    await web.close()
    await worker.close()


async def test_capacity_is_shared_by_every_sender(hosts: list[Broadcast]) -> None:
    """channels_redis's test_send_capacity and test_send_specific_capacity, with the
    senders on two hosts."""
    a, b = (
        BroadcastChannelLayer(using=front, capacity=3, channel_capacity={"tiny": 1})
        for front in hosts
    )
    await a.send("test-channel-1", {"type": "m", "n": 1})
    await b.send("test-channel-1", {"type": "m", "n": 2})
    await a.send("test-channel-1", {"type": "m", "n": 3})
    with pytest.raises(ChannelFull):
        await b.send("test-channel-1", {"type": "m", "n": 4})
    await b.send("tiny", {"type": "m"})
    with pytest.raises(ChannelFull):
        await a.send("tiny", {"type": "m"})
    assert [(await receive(b, "test-channel-1"))["n"] for _ in range(3)] == [1, 2, 3]
    await a.send("test-channel-1", {"type": "m", "n": 5})  # room again
    await a.close()
    await b.close()


async def test_the_earliest_message_expires_first(hosts: list[Broadcast]) -> None:
    """channels_redis's test_message_expiry__earliest_message_expires and
    __all_messages_under_expiration_time, on a normal channel."""
    layer = BroadcastChannelLayer(using=hosts[0], expiry=0.6)
    await layer.send("exp", {"type": "m", "n": 1})
    await asyncio.sleep(0.4)
    await layer.send("exp", {"type": "m", "n": 2})
    await layer.send("exp", {"type": "m", "n": 3})
    await asyncio.sleep(0.3)  # the first is past its expiry, the others are not
    assert [(await receive(layer, "exp"))["n"] for _ in range(2)] == [2, 3]
    assert await nothing_on(layer, "exp")
    await layer.close()


async def test_a_receiver_that_stops_gives_its_message_back(hosts: list[Broadcast]) -> None:
    """A message handed to a ``receive()`` cancelled before it ran goes back to the
    head of the queue, so another receiver (here: on another host) gets it."""
    a, b = (BroadcastChannelLayer(using=front) for front in hosts)
    for round_ in range(20):
        task = asyncio.ensure_future(a.receive("handover"))
        await asyncio.sleep(0.01)
        await b.send("handover", {"type": "m", "n": round_})
        await asyncio.sleep(random.uniform(0, 0.005))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            assert (await task)["n"] == round_
            continue
        assert (await receive(b, "handover"))["n"] == round_
    assert await nothing_on(b, "handover")
    await a.close()
    await b.close()


async def test_every_receiver_waiting_in_one_process_is_served(hosts: list[Broadcast]) -> None:
    """Two receivers looping on one channel in one process, as two consumers of a
    worker: each message is taken by one of them, and each of the two final
    messages reaches the receiver still waiting (none is left without a fetch)."""
    layer = BroadcastChannelLayer(using=hosts[0], capacity=1000)
    taken: list[list[int]] = [[], []]

    async def work(index: int) -> None:
        while (message := await layer.receive("pool"))["type"] != "end":
            taken[index].append(message["n"])

    workers = [asyncio.ensure_future(work(index)) for index in range(2)]
    for n in range(300):
        await layer.send("pool", {"type": "m", "n": n})
    for _ in workers:
        await layer.send("pool", {"type": "end"})
    await asyncio.wait_for(asyncio.gather(*workers), 30)
    assert sorted(taken[0] + taken[1]) == list(range(300))
    await layer.close()


def test_sync_workers_through_async_to_sync(backend_name: str) -> None:
    """Sending and receiving a normal channel from sync code (threads, commands)."""
    front = make_bus(backend_name)
    layer = BroadcastChannelLayer(using=front)
    send, take = async_to_sync(layer.send), async_to_sync(layer.receive)
    for n in range(3):
        send("sync-jobs", {"type": "m", "n": n})
    assert [take("sync-jobs")["n"] for _ in range(3)] == [0, 1, 2]
    async_to_sync(layer.close)()
    front.close()


async def test_a_backend_without_queues_refuses_normal_channels_in_one_line() -> None:
    front = create_broadcast("loopback", {"BACKEND": f"{loopback.__name__}.LoopbackBackend"})
    layer = BroadcastChannelLayer(using=front)
    message = (
        "broadcast backend 'loopback' (LoopbackBackend) has no work queues, so the channel "
        "layer cannot send() to or receive() from a normal channel name on it (groups and "
        "new_channel() names work); choose a backend with queues (memory, Redis, Redis "
        "Streams, PostgreSQL)"
    )
    with pytest.raises(QueuesNotSupported) as sent:
        await layer.send("jobs", {"type": "m"})
    assert str(sent.value) == message
    with pytest.raises(QueuesNotSupported):
        await layer.receive("jobs")
    channel = await layer.new_channel()  # the rest works
    await layer.send(channel, {"type": "m"})
    assert (await receive(layer, channel))["type"] == "m"
    await layer.close()
    await front.aclose()


@pytest.mark.parametrize("backend_name", ["redis", "redis-stream"])
async def test_a_send_after_redis_forgot_the_queue_script_loads_it_again(
    backend_name: str,
) -> None:
    """Sends go as ``EVALSHA``: after a restart, ``SCRIPT FLUSH`` or a failover the
    server answers ``NOSCRIPT``, and the send loads the script and goes again."""
    bus = make_bus(backend_name)
    backend: Any = bus.config.backend_class(bus.config)
    await backend.connect()
    try:
        await backend.connections.execute(("SCRIPT", "FLUSH"))
        assert await backend.enqueue("jobs", b"first", capacity=5, expiry=60, wake=b"0")
        assert await backend.enqueue("jobs", b"second", capacity=5, expiry=60, wake=b"0")
        assert await backend.dequeue("jobs", 5) == [b"first", b"second"]
    finally:
        await backend.close()


def test_receive_is_a_coroutine_function_and_a_new_channel_waits() -> None:
    """channels_redis's test_proxied_methods_coroutine_check and test_receive_hang."""
    import inspect

    layer = BroadcastChannelLayer(using=make_bus("memory"))  # nothing to close: memory
    assert inspect.iscoroutinefunction(layer.send)
    assert inspect.iscoroutinefunction(layer.receive)

    async def hang() -> None:
        channel = await layer.new_channel()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(channel), 0.3)
        await layer.close()

    asyncio.run(hang())
