"""In-process backend: every event loop and thread of one process shares one bus.

The default when ``BROADCAST_BACKENDS`` is not set, and the one to use in tests.
Entries with the same ``LOCATION`` share a store (as Django's locmem cache does);
each channel keeps a bounded ring of its last ``HISTORY_SIZE`` events, and
remembers the newest event it dropped, so ``retains()`` is exact (and, from the
store's id counter, refuses positions no event had yet). Rings of
channels without a publish for ``IDLE_RETENTION`` seconds are dropped.
Work queues (the channel layer's normal channels) are per store too.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

from ..options import is_whole_number, option_error
from .base import BackendConfig, BaseBackend, RawEvent
from .history import IDLE_RETENTION, check_idle_retention, integer_id


class _Ring:
    """One channel's retained events and what it no longer holds."""

    __slots__ = ("dropped", "events", "newest", "used")

    def __init__(self, size: int, dropped: int) -> None:
        self.events: deque[RawEvent] = deque(maxlen=size)
        #: Every event of the channel up to this id may be gone (0: none is).
        self.dropped = dropped
        self.newest = dropped  # the id of its last event
        self.used = 0.0  # time.monotonic() of its last publish


class _Store:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last_id = 0
        # Least recently published first, so idle rings are swept from the front.
        self.rings: OrderedDict[str, _Ring] = OrderedDict()
        #: The newest id of any ring swept for idleness: a channel without a ring
        #: may have lost every event up to it.
        self.swept = 0
        self.subscribers: dict[str, set[MemoryBackend]] = {}
        #: Work queues: ``(deadline, payload)`` pairs, oldest first.
        self.queues: dict[str, deque[tuple[float, bytes]]] = {}

    def live_queue(self, key: str, now: float) -> deque[tuple[float, bytes]]:
        """Queue ``key`` without its expired messages; call with ``lock`` held."""
        queue = self.queues.get(key)
        if queue is None:
            queue = self.queues[key] = deque()
        while queue and queue[0][0] <= now:
            queue.popleft()
        return queue

    def sweep(self, before: float) -> None:
        """Drop the rings last published to before ``before``; call with ``lock`` held."""
        rings = self.rings
        while rings:
            ring = rings[next(iter(rings))]
            if ring.used >= before:
                return
            rings.popitem(last=False)
            self.swept = max(self.swept, ring.newest)


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()


def _number(event: RawEvent) -> int:
    return int(event.id or 0)


def _store(location: str) -> _Store:
    with _stores_lock:
        return _stores.setdefault(location, _Store())


def disconnect(location: str = "") -> None:
    """Make every memory backend on ``location`` lose its "connection" as a
    networked one would: a waiting ``receive()`` raises ``ConnectionResetError``
    and the app reconnects (resuming from its positions). For testing code that
    must survive reconnections; the backend itself never disconnects."""
    store = _store(location)
    with store.lock:
        backends = {b for group in store.subscribers.values() for b in group}
    for backend in backends:
        loop = backend._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(backend._lose_connection)


class MemoryBackend(BaseBackend):
    """One process, history in a bounded ring per channel (``OPTIONS["HISTORY_SIZE"]``),
    dropped after ``OPTIONS["IDLE_RETENTION"]`` seconds without a publish."""

    supports_history = True
    supports_queues = True
    default_options: ClassVar[Mapping[str, Any]] = {
        "HISTORY_SIZE": 1000,
        "IDLE_RETENTION": IDLE_RETENTION,
    }

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._store = _store(self.location)
        self._history_size: int = self.options["HISTORY_SIZE"]
        self._idle_retention: float | None = self.options["IDLE_RETENTION"]
        self._inbox: deque[RawEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channels: set[str] = set()

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        size = options.get("HISTORY_SIZE", 1)
        if not is_whole_number(size, 0):
            raise option_error("HISTORY_SIZE", "a whole number >= 0", size)
        check_idle_retention(options)

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        await self.unsubscribe(list(self._channels))
        self._inbox.clear()  # undelivered: the next subscribe() resumes before them
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionResetError("memory backend closed"))

    async def publish(self, channel: str, payload: bytes) -> str | None:
        key = self.wire_name(channel)
        store = self._store
        with store.lock:
            number = store.last_id = store.last_id + 1
            event = RawEvent(channel, payload, str(number))
            ring = store.rings.get(key)
            if ring is None:
                ring = store.rings[key] = _Ring(self._history_size, store.swept)
            events = ring.events
            if len(events) == events.maxlen:  # full: the oldest (or this one) falls off
                ring.dropped = int(events[0].id or 0) if events else number
            events.append(event)
            ring.newest = number
            ring.used = now = time.monotonic()
            store.rings.move_to_end(key)
            if self._idle_retention is not None:
                store.sweep(now - self._idle_retention)
            targets = list(store.subscribers.get(key, ()))
        for backend in targets:
            backend._deliver_threadsafe(event)
        return event.id

    def _deliver_threadsafe(self, event: RawEvent) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(event)
        else:
            loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: RawEvent) -> None:
        if event.channel not in self._channels:
            return
        self._inbox.append(event)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _lose_connection(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionResetError("memory backend disconnected"))

    async def subscribe(self, positions: Mapping[str, str | None]) -> Mapping[str, str]:
        baselines: dict[str, str] = {}
        with self._store.lock:
            for channel, position in positions.items():
                key = self.wire_name(channel)
                ring = self._store.rings.get(key)
                events = ring.events if ring is not None else ()
                if position is None:
                    # The newest id issued: every later event of the channel sorts after
                    # it, and no ring swept before it can make it look like a gap.
                    baselines[channel] = str(self._store.last_id)
                else:  # resuming: what was published meanwhile comes first
                    after = self.id_order(position)
                    self._inbox.extend(e for e in events if self.id_order(e.id or "0") > after)
                self._channels.add(channel)
                self._store.subscribers.setdefault(key, set()).add(self)
        if self._inbox:
            self._wake()
        return baselines

    async def unsubscribe(self, channels: Collection[str]) -> None:
        with self._store.lock:
            for channel in channels:
                self._channels.discard(channel)
                key = self.wire_name(channel)
                subscribers = self._store.subscribers.get(key)
                if subscribers is not None:
                    subscribers.discard(self)
                    if not subscribers:
                        del self._store.subscribers[key]

    async def receive(self) -> Sequence[RawEvent]:
        while not self._inbox:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        events = list(self._inbox)
        self._inbox.clear()
        return events

    async def enqueue(
        self, queue: str, payload: bytes, *, capacity: int, expiry: float, wake: bytes
    ) -> bool:
        now = time.monotonic()
        with self._store.lock:
            items = self._store.live_queue(self.wire_name(queue), now)
            if len(items) >= capacity:
                return False
            items.append((now + expiry, payload))
        await self.publish(queue, wake)
        return True

    async def dequeue(self, queue: str, count: int) -> list[bytes]:
        key = self.wire_name(queue)
        store = self._store
        with store.lock:
            items = store.live_queue(key, time.monotonic())
            taken = [items.popleft()[1] for _ in range(min(count, len(items)))]
            if not items:
                del store.queues[key]
        return taken

    async def restore(
        self, queue: str, payloads: Sequence[bytes], *, expiry: float, wake: bytes
    ) -> None:
        deadline = time.monotonic() + expiry
        with self._store.lock:
            items = self._store.live_queue(self.wire_name(queue), 0.0)
            items.extendleft((deadline, payload) for payload in reversed(payloads))
        await self.publish(queue, wake)

    async def history(
        self, channel: str, since: str | None, limit: int | None
    ) -> Sequence[RawEvent]:
        after = self.id_order(since) if since is not None else None
        with self._store.lock:
            ring = self._store.rings.get(self.wire_name(channel))
            events = list(ring.events) if ring is not None else []
        if after is not None:
            events = [event for event in events if self.id_order(event.id or "0") > after]
        if limit is not None:
            events = events[max(len(events) - limit, 0) :]
        return events

    async def history_page(self, channel: str, since: str | None, count: int) -> Sequence[RawEvent]:
        (after,) = self.id_order(since) if since is not None else (0,)
        with self._store.lock:
            ring = self._store.rings.get(self.wire_name(channel))
            if ring is None or count <= 0:
                return []
            # Ids increase along the ring: find the start, copy only the page.
            start = bisect.bisect_right(ring.events, after, key=_number)
            return list(itertools.islice(ring.events, start, start + count))

    async def retains(self, channel: str, event_id: str) -> bool:
        (after,) = self.id_order(event_id)
        store = self._store
        with store.lock:
            ring = store.rings.get(self.wire_name(channel))
            dropped = ring.dropped if ring is not None else store.swept
            issued = store.last_id
        # After the last id issued: no event of this store was given that position.
        return dropped <= after <= issued

    def id_order(self, event_id: str) -> tuple[int, ...]:
        """Memory ids are ``"N"``, a whole number below 2**64."""
        return integer_id(event_id, type(self).__name__, dashed=False)
