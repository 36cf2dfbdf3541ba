"""Scenario drivers, shared by every system: each takes an Adapter and returns rows.

Payloads are strings whose first character says what they are (warm-up,
measured message, end of run) followed by a 19-digit monotonic timestamp in
nanoseconds (only filled in where latency is measured), padded to the size.

Standard library only: this module also runs in the peers' virtualenv.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

WARM, MESSAGE, END = "w", "m", "e"
SMALL, LARGE = 64, 64 * 1024
LATENCY_RATE = 1_000  # msg/s, fixed
IDLE_CHANNELS = 1_000
FAN_OUT = 1_000
PUBLISHERS = 100
FAN_OUT_PUBLISHERS = 10  # fan-out-1000-concurrent
FOLLOWED = 10_000  # many-channels: channels one process follows, events on one
WORKERS = 2  # worker-queue: receivers taking from one normal channel
BATCH = 100  # subscriptions entered (left) at once where that is not measured


@dataclass(frozen=True)
class Budget:
    """How long and how much: throughput runs stop at whichever cap comes first."""

    seconds: float  # publishing time cap for the throughput scenarios
    messages: int  # message cap: one-to-one, concurrent-publish, many-channels
    fan_out_messages: int  # message cap: fan-out-1000(-concurrent) (1,000 deliveries each)
    large_messages: int  # message cap: payload-64k
    latency_seconds: float  # length of the 1,000 msg/s cross-process run
    idle_subscribers: int
    drain_timeout: float  # after publishing stops, to deliver what is in flight


# The message caps stay below the subscriber queue bound of the in-process
# systems (our MAX_QUEUE is 100,000): a publisher whose publish never suspends
# runs to the cap before any subscriber is scheduled. On the 2-core VM of
# docs/performance, a cell's rounds still differ by more than 15% (longer cells
# did not narrow them): compare ratios within a round.
QUICK = Budget(1.5, 50_000, 2_000, 2_000, 2.0, 10_000, 30.0)
FULL = Budget(4.0, 50_000, 3_000, 3_000, 10.0, 100_000, 60.0)


@dataclass
class Result:
    rows: list[tuple[str, float, str]]  # (scenario, value, unit)
    note: str = ""


def payload(kind: str, size: int = SMALL, stamp: int = 0) -> str:
    head = f"{kind}{stamp:019d}"
    return head + "x" * (size - len(head))


#: How a subscriber is read, as an adapter's ``receiver()`` returns it: ``get()``
#: awaits the library's next item and ``unwrap(item)`` is its payload (``None``:
#: the item is the payload). The readers await the library's own awaitable, with
#: no coroutine of the harness in between, for every system alike.
Receiver = tuple[Callable[[], Awaitable[Any]], Callable[[Any], Any] | None]


def kind_of(message: str | bytes) -> str:
    first = message[0]
    return chr(first) if isinstance(first, int) else first


async def skip_to_warm(receiver: Receiver) -> None:
    """Read until the first warm-up marker: the subscription is live."""
    get, unwrap = receiver
    while True:
        item = await get()
        if kind_of(item if unwrap is None else unwrap(item)) == WARM:
            return


def channel_name(label: str) -> str:
    """Unique per process, valid for every system (Channels groups, PostgreSQL, ...)."""
    return f"bench.{os.getpid()}.{label}"


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Countdown:
    def __init__(self, count: int) -> None:
        self.left = count
        self.done = asyncio.Event()
        if count <= 0:
            self.done.set()

    def hit(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


class Reader:
    """Counts measured messages on one subscriber until the end marker."""

    def __init__(self, receiver: Receiver, warm: Countdown) -> None:
        self.count = 0
        self.finished_at = 0.0
        self.task = asyncio.create_task(self.run(receiver, warm))

    async def run(self, receiver: Receiver, warm: Countdown) -> None:
        await skip_to_warm(receiver)
        warm.hit()
        get, unwrap = receiver
        while True:
            item = await get()
            kind = kind_of(item if unwrap is None else unwrap(item))
            if kind == MESSAGE:
                self.count += 1
            elif kind == END:
                self.finished_at = time.perf_counter()
                return


async def warm_up(
    adapter: Any, channel: str, warm: Countdown, readers: list[Reader], publishers: int
) -> None:
    """Publish warm-up markers until every subscriber has seen one: subscriptions are live.

    Each round publishes from as many tasks as the measurement will, so
    connection pools are filled before the clock starts.
    """
    marker = payload(WARM)
    deadline = time.perf_counter() + 15
    while not warm.done.is_set():
        for reader in readers:
            if reader.task.done():
                reader.task.result()  # a subscriber crashed: raise its error
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{warm.left} subscriber(s) received nothing in 15 s")
        await asyncio.gather(*(adapter.publish(channel, marker) for _ in range(publishers)))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(warm.done.wait(), 0.01)


async def throughput(
    adapter: Any,
    budget: Budget,
    *,
    cap: int,
    subscribers: int = 1,
    publishers: int = 1,
    size: int = SMALL,
    followed: int = 0,
) -> tuple[float, str]:
    """Messages (or deliveries) per second, from the first publish to the last delivery.

    ``followed`` other channels are subscribed to first (nobody publishes there)."""
    channel = channel_name(f"t{subscribers}x{publishers}x{size}")
    body = payload(MESSAGE, size)
    handles = []
    idle = await follow(adapter, [channel_name(f"followed.{i}") for i in range(followed)])
    for _ in range(subscribers):  # one at a time: see encode_broadcaster.py
        subscription = adapter.subscribe(channel)
        handles.append((subscription, await subscription.__aenter__()))
    warm = Countdown(subscribers)
    readers = [Reader(adapter.receiver(handle), warm) for _, handle in handles]
    sent = 0
    try:
        await warm_up(adapter, channel, warm, readers, publishers)
        start = time.perf_counter()
        deadline = start + budget.seconds

        async def publisher() -> None:
            nonlocal sent
            while sent < cap and time.perf_counter() < deadline:
                sent += 1
                await adapter.publish(channel, body)

        await asyncio.gather(*(publisher() for _ in range(publishers)))
        await adapter.publish(channel, payload(END))
        tasks = [reader.task for reader in readers]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), budget.drain_timeout)
        except asyncio.TimeoutError:
            delivered = sum(reader.count for reader in readers)
            raise RuntimeError(
                f"delivered {delivered} of {sent * subscribers} "
                f"{budget.drain_timeout:.0f} s after publishing stopped"
            ) from None
    finally:
        for reader in readers:
            reader.task.cancel()
        await asyncio.gather(*(reader.task for reader in readers), return_exceptions=True)
        for subscription, _ in reversed(handles):
            await subscription.__aexit__(None, None, None)
        await leave(idle)
    delivered = sum(reader.count for reader in readers)
    elapsed = max(reader.finished_at for reader in readers) - start
    expected = sent * subscribers
    note = f"lost {expected - delivered} of {expected}" if delivered != expected else ""
    return delivered / elapsed, note


async def follow(adapter: Any, channels: list[str]) -> list[Any]:
    """Subscribe to each of ``channels`` (BATCH at a time); the open subscriptions."""
    opened: list[Any] = []
    try:
        for start in range(0, len(channels), BATCH):
            batch = [adapter.subscribe(name) for name in channels[start : start + BATCH]]
            await asyncio.gather(*(s.__aenter__() for s in batch))
            opened.extend(batch)
    except BaseException:
        await leave(opened)
        raise
    return opened


async def leave(subscriptions: list[Any]) -> None:
    """Leave ``subscriptions`` BATCH at a time (distinct channels: no races)."""
    while subscriptions:
        batch, subscriptions = subscriptions[-BATCH:], subscriptions[:-BATCH]
        await asyncio.gather(*(s.__aexit__(None, None, None) for s in batch))


async def one_to_one(adapter: Any, budget: Budget) -> Result:
    rate, note = await throughput(adapter, budget, cap=budget.messages)
    return Result([("one-to-one", rate, "msg/s")], note)


async def concurrent_publish(adapter: Any, budget: Budget) -> Result:
    rate, note = await throughput(adapter, budget, cap=budget.messages, publishers=PUBLISHERS)
    return Result([("concurrent-publish", rate, "msg/s")], note)


async def fan_out(adapter: Any, budget: Budget) -> Result:
    rate, note = await throughput(adapter, budget, cap=budget.fan_out_messages, subscribers=FAN_OUT)
    return Result([("fan-out-1000", rate, "deliveries/s")], note)


async def fan_out_concurrent(adapter: Any, budget: Budget) -> Result:
    """fan-out-1000 with FAN_OUT_PUBLISHERS publisher tasks, as on a busy site."""
    rate, note = await throughput(
        adapter,
        budget,
        cap=budget.fan_out_messages,
        subscribers=FAN_OUT,
        publishers=FAN_OUT_PUBLISHERS,
    )
    return Result([("fan-out-1000-concurrent", rate, "deliveries/s")], note)


async def many_channels(adapter: Any, budget: Budget) -> Result:
    """one-to-one while the process follows FOLLOWED - 1 other, silent channels."""
    rate, note = await throughput(adapter, budget, cap=budget.messages, followed=FOLLOWED - 1)
    return Result([("many-channels", rate, "msg/s")], note)


async def worker_queue(adapter: Any, budget: Budget) -> Result:
    """A channel layer's normal channel as a work queue (``runworker``): one sender,
    WORKERS receivers, messages per second taken, each by one receiver."""
    channel = channel_name("jobs")
    counts = [0] * WORKERS
    finished = [0.0] * WORKERS
    warm = Countdown(WORKERS)

    async def work(index: int) -> None:
        get, unwrap = adapter.queue_receiver(channel)
        while True:
            item = await get()
            kind = kind_of(item if unwrap is None else unwrap(item))
            if kind == MESSAGE:
                counts[index] += 1
            elif kind == WARM:
                warm.hit()
            elif kind == END:  # one each, after every message (first in, first out)
                finished[index] = time.perf_counter()
                return

    tasks = [asyncio.create_task(work(index)) for index in range(WORKERS)]
    sent = 0
    try:
        for _ in range(WORKERS):
            await adapter.send(channel, payload(WARM))
        await asyncio.wait_for(warm.done.wait(), 15)
        body = payload(MESSAGE)
        start = time.perf_counter()
        deadline = start + budget.seconds
        while sent < budget.messages and time.perf_counter() < deadline:
            sent += 1
            await adapter.send(channel, body)
        for _ in range(WORKERS):
            await adapter.send(channel, payload(END))
        await asyncio.wait_for(asyncio.gather(*tasks), budget.drain_timeout)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    taken = sum(counts)
    note = ""
    if taken != sent:
        note = f"lost {sent - taken} of {sent}" if taken < sent else f"{taken - sent} taken twice"
    return Result([("worker-queue", taken / (max(finished) - start), "msg/s")], note)


async def payload_64k(adapter: Any, budget: Budget) -> Result:
    rate, note = await throughput(adapter, budget, cap=budget.large_messages, size=LARGE)
    return Result([("payload-64k", rate, "msg/s")], note)


async def idle_subscriber_memory(adapter: Any, budget: Budget) -> Result:
    """RSS growth per subscriber held open (nobody reading) over 1,000 channels."""
    count = budget.idle_subscribers
    channels = [channel_name(f"idle.{i}") for i in range(IDLE_CHANNELS)]
    warm = adapter.subscribe(channel_name("idle.warm"))  # open connections before the baseline
    await warm.__aenter__()
    await warm.__aexit__(None, None, None)
    gc.collect()
    before = rss_bytes()
    subscriptions: list[Any] = []
    try:
        for i in range(count):  # one at a time: concurrency would add transient memory
            subscription = adapter.subscribe(channels[i % IDLE_CHANNELS])
            await subscription.__aenter__()
            subscriptions.append(subscription)
        gc.collect()
        after = rss_bytes()
    finally:
        # Not measured; consecutive subscribers are on distinct channels.
        await leave(subscriptions)
    return Result([("idle-subscriber-memory", (after - before) / count, "bytes/subscriber")])


async def cross_process_latency(adapter: Any, budget: Budget, system: str) -> Result:
    """p50 / p99 publish -> deliver, publisher in a second process at 1,000 msg/s.

    Both processes stamp with CLOCK_MONOTONIC, which is system-wide on Linux.
    The first 10% of the samples are dropped as warm-up.
    """
    channel = channel_name("latency")
    expected = int(budget.latency_seconds * LATENCY_RATE)
    subscription = adapter.subscribe(channel)
    receiver = adapter.receiver(await subscription.__aenter__())
    get, unwrap = receiver
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.run_one", system, "cross-process-latency",
        "--publish-to", channel, "--seconds", str(budget.latency_seconds),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    latencies = []

    async def receive() -> None:
        await skip_to_warm(receiver)
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        await child.stdin.drain()
        while True:
            item = await get()
            now = time.monotonic_ns()
            message = item if unwrap is None else unwrap(item)
            kind = kind_of(message)
            if kind == MESSAGE:
                latencies.append(now - int(message[1:20]))
            elif kind == END:
                return

    try:
        try:
            await asyncio.wait_for(receive(), budget.latency_seconds + 10)
        except asyncio.TimeoutError:
            status = "running" if child.returncode is None else f"exit {child.returncode}"
            raise RuntimeError(
                f"{len(latencies)} of {expected} messages arrived (publisher: {status})"
            ) from None
        if await asyncio.wait_for(child.wait(), 10):
            raise RuntimeError(f"publisher process exited with status {child.returncode}")
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        await subscription.__aexit__(None, None, None)
    samples = sorted(latencies[len(latencies) // 10 :])
    if len(samples) < 10:
        raise RuntimeError(f"only {len(latencies)} of {expected} messages arrived")
    p50, p99 = (samples[min(len(samples) - 1, int(q * len(samples)))] / 1e6 for q in (0.5, 0.99))
    note = f"lost {expected - len(latencies)} of {expected}" if len(latencies) != expected else ""
    return Result(
        [("cross-process-latency-p50", p50, "ms"), ("cross-process-latency-p99", p99, "ms")], note
    )


async def latency_publisher(adapter: Any, channel: str, seconds: float) -> None:
    """The second process of cross-process-latency: warm up until told, then 1,000 msg/s."""
    go = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
    marker = payload(WARM)
    while not go.done():
        await adapter.publish(channel, marker)
        await asyncio.wait([go], timeout=0.01)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(int(seconds * LATENCY_RATE)):
        delay = start + i / LATENCY_RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await adapter.publish(channel, payload(MESSAGE, SMALL, time.monotonic_ns()))
    await adapter.publish(channel, payload(END))


SCENARIOS: dict[str, Callable[..., Awaitable[Result]]] = {
    "one-to-one": one_to_one,
    "concurrent-publish": concurrent_publish,
    "fan-out-1000": fan_out,
    "fan-out-1000-concurrent": fan_out_concurrent,
    "many-channels": many_channels,
    "worker-queue": worker_queue,
    "cross-process-latency": cross_process_latency,
    "idle-subscriber-memory": idle_subscriber_memory,
    "payload-64k": payload_64k,
}
