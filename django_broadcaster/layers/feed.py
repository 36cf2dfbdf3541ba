"""`Feed`: a normal channel's work queue, feeding one event loop's `Inbox`.

A normal channel name (``"thumbnails"``) is a work queue in the engine (the
backend's ``enqueue``/``dequeue``/``restore``), shared by every process: each
message goes to exactly one receiver. A loop receiving on the channel is
subscribed to the queue's wake-up channel and runs one fetch task while
``receive()`` calls wait there. The task takes as many messages as there are
waiting receivers, never more (a message never waits in one process while
another could take it), and looks again on every wake-up, and every `POLL`
seconds in case one was lost (Redis pub/sub loses them during an outage).
Messages handed to receivers that went away before taking them (Channels
cancels ``receive()`` when a consumer stops) go back to the head of the queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from functools import partial
from typing import Any

from ..front import Broadcast
from ..hub import Hub
from .codec import Codec
from .inbox import Inbox, Message
from .names import QUEUE_TOPIC

logger = logging.getLogger("django_broadcaster.layers")

#: Seconds between looks at a queue while receivers wait and no wake-up came.
POLL = 1.0
#: Seconds `Feed.close` lets a fetch in flight finish before cancelling it.
CLOSE_GRACE = 2.0


class Feed:
    """The fetch side of one normal channel on one event loop."""

    __slots__ = ("codec", "expiry", "front", "inbox", "poked", "signal", "spawn", "task", "topic")

    def __init__(
        self,
        front: Broadcast,
        codec: Codec,
        inbox: Inbox,
        expiry: float,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.front = front
        self.codec = codec
        self.inbox = inbox
        self.expiry = expiry
        #: Runs a coroutine in the background, keeping the task (the loop's `LoopLayer.spawn`).
        self.spawn = spawn
        self.topic = QUEUE_TOPIC + inbox.name
        self.task: asyncio.Task[None] | None = None
        #: A wake-up came since the last look.
        self.poked = False
        #: Resolved by a wake-up (or the poll timer) while the task sleeps.
        self.signal: asyncio.Future[None] | None = None

    def wanted(self) -> int:
        """How many messages to take now: one per waiting receiver not yet served."""
        inbox = self.inbox
        queued = inbox.queued
        return min(len(inbox.waiters) - queued, inbox.capacity - queued)

    def start(self) -> None:
        """Run the fetch task unless it runs or nobody waits."""
        if (self.task is None or self.task.done()) and self.wanted() > 0:
            self.task = asyncio.get_running_loop().create_task(self.run())

    def poke(self) -> None:
        """A wake-up arrived: something was queued (or given back)."""
        self.poked = True
        signal = self.signal
        if signal is not None and not signal.done():
            signal.set_result(None)

    async def run(self) -> None:
        """Take messages while receivers wait; sleep until a wake-up or `POLL`."""
        hub = self.front.hubs.current()
        loop = asyncio.get_running_loop()
        try:
            while (count := self.wanted()) > 0:
                self.poked = False
                try:
                    payloads = await hub.call(
                        "receive from", partial(hub.backend.dequeue, self.topic, count)
                    )
                except Exception as exc:  # the engine is down longer than TIMEOUT, say
                    logger.warning("channel layer could not fetch %r: %s", self.inbox.name, exc)
                    payloads = []
                if payloads:
                    self.hand_out(hub, payloads)
                    continue
                if self.poked:
                    continue
                self.signal = signal = loop.create_future()
                timer = loop.call_later(POLL, self.poke)
                try:
                    await signal
                finally:
                    timer.cancel()
                    self.signal = None
        finally:
            self.give_back_soon()

    def hand_out(self, hub: Hub, payloads: Sequence[bytes]) -> None:
        """Queue each message taken for the receivers waiting here."""
        inbox = self.inbox
        now = time.monotonic()
        for payload in payloads:
            event = hub.decode(self.topic, payload, None)
            message = None if event is None else self.codec.decode(event)
            if not isinstance(message, dict):
                if event is not None:
                    logger.warning("skipped a non-dict message queued on %r", inbox.name)
                continue
            inbox.messages.append((now + self.expiry, message))
            inbox.wake()
        self.give_back_soon()

    def give_back_soon(self) -> None:
        """Return the messages no receiver here will take (they all went away).

        Looked at once the receivers just woken have run: until then the messages
        handed to them are still queued, and most calls find nothing to return.
        """
        if not self.inbox.waiters and self.inbox.queue:
            asyncio.get_running_loop().call_soon(self.give_back_untaken)

    def give_back_untaken(self) -> None:
        """Return the queued messages if no receiver here waits for them."""
        if not self.inbox.waiters and self.inbox.queue:
            self.spawn(self.give_back())

    async def give_back(self) -> None:
        """Put this loop's untaken messages back at the head of the queue, in order."""
        queue = self.inbox.queue
        if not queue:
            return
        messages = [message for _, message in queue]
        queue.clear()
        hub = self.front.hubs.current()
        try:
            payloads = [hub.sign(self.topic, self.codec.encode(m)) for m in messages]
            wake = hub.sign(self.topic, self.codec.serializer.dumps(0))
            restore = partial(
                hub.backend.restore, self.topic, payloads, expiry=self.expiry, wake=wake
            )
            await hub.call("give back to", restore)
        except Exception:
            logger.exception(
                "channel layer lost %d message(s) of %r giving them back to the queue",
                len(messages),
                self.inbox.name,
            )

    async def close(self) -> None:
        """Stop fetching; a fetch in flight may finish (its messages go back)."""
        task, self.task = self.task, None
        if task is None or task.done():
            return
        self.poke()
        done, _ = await asyncio.wait({task}, timeout=CLOSE_GRACE)
        if not done:
            task.cancel()
        with suppress(Exception, asyncio.CancelledError):
            await task


async def send(
    front: Broadcast, codec: Codec, name: str, message: Message, capacity: int, expiry: float
) -> bool:
    """Queue ``message`` on normal channel ``name``; ``False`` when the queue is full."""
    hub = front.hubs.current()
    topic = QUEUE_TOPIC + name
    payload = hub.sign(topic, codec.encode(message))
    wake = hub.sign(topic, codec.serializer.dumps(0))
    enqueue = partial(
        hub.backend.enqueue, topic, payload, capacity=capacity, expiry=expiry, wake=wake
    )
    return await hub.call("send to", enqueue)
