"""What every system under test supplies, and the small helpers the raw clients share.

This module must import nothing outside the standard library: it also runs in
the peers' virtualenv (see ``benchmarks/peers.py``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from ..scenarios import Receiver

# Every system talks to the same servers. Override with environment variables
# to point the whole run elsewhere (loopback only on the shared machines).
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
#: A node of a Redis Cluster for the "-cluster" rows (none runs by default: start
#: one with ``python -m benchmarks.cluster`` and export what it prints).
REDIS_CLUSTER_URL = os.environ.get("BENCH_REDIS_CLUSTER_URL", "")


class Unavailable(Exception):
    """The system cannot run here (library missing, not importable yet, ...)."""


class Adapter:
    """One system under test, reduced to the primitives the scenario drivers use.

    ``subscribe(channel)`` returns the system's own async context manager (or
    the thinnest one possible), so the idle-memory scenario measures what a user
    of that system holds per subscriber and nothing of the harness.
    ``receiver(handle)`` says how to read what it yields: the system's own
    zero-argument awaitable-returning callable and how to take the payload
    (``str`` or ``bytes``) out of what it returns (`scenarios.Receiver`).
    """

    async def start(self) -> None:
        """Connect; called once inside the event loop before the scenario."""

    async def close(self) -> None:
        """Release connections and tasks; called once after the scenario."""

    async def publish(self, channel: str, payload: str) -> None:
        raise NotImplementedError

    def subscribe(self, channel: str) -> Any:
        raise NotImplementedError

    def receiver(self, handle: Any) -> Receiver:
        """How subscription ``handle`` is read (see `scenarios.Receiver`)."""
        raise NotImplementedError

    async def send(self, channel: str, payload: str) -> None:
        """Send to a channel layer's normal channel (work queue); layers only."""
        raise Unavailable("not a channel layer: no worker channels")

    def queue_receiver(self, channel: str) -> Receiver:
        """How normal channel ``channel`` is read (see `scenarios.Receiver`); layers only."""
        raise Unavailable("not a channel layer: no worker channels")


class LocalFanout:
    """Channel -> local queues: the least a bare client needs for many subscribers.

    ``listen(key)`` / ``unlisten(key)`` are called for the first subscriber of
    a channel and after the last one leaves; the reader calls ``dispatch``.
    """

    def __init__(
        self,
        listen: Callable[[Any], Awaitable[None]],
        unlisten: Callable[[Any], Awaitable[None]],
    ) -> None:
        self.queues: dict[Any, list[asyncio.Queue[Any]]] = {}
        self.listen = listen
        self.unlisten = unlisten

    def subscription(self, key: Any) -> LocalSubscription:
        return LocalSubscription(self, key)

    def dispatch(self, key: Any, payload: Any) -> None:
        for queue in self.queues.get(key, ()):
            queue.put_nowait(payload)


class LocalSubscription:
    """Async context manager: one local queue on one channel of a LocalFanout."""

    __slots__ = ("fanout", "key", "queue")

    def __init__(self, fanout: LocalFanout, key: Any) -> None:
        self.fanout = fanout
        self.key = key
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    async def __aenter__(self) -> asyncio.Queue[Any]:
        queues = self.fanout.queues.setdefault(self.key, [])
        queues.append(self.queue)
        if len(queues) == 1:
            await self.fanout.listen(self.key)
        return self.queue

    async def __aexit__(self, *exc_info: object) -> None:
        queues = self.fanout.queues[self.key]
        queues.remove(self.queue)
        if not queues:
            del self.fanout.queues[self.key]
            await self.fanout.unlisten(self.key)
