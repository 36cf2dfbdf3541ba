"""A subscriber's view of the bus: a bounded queue fed by the hub."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any

from . import loops
from .events import Event, validate_channel_name
from .exceptions import HistoryNotSupported, SubscriberLagged
from .hub import Hub
from .hubs import Hubs
from .options import is_whole_number

Since = str | Mapping[str, str | None] | None


class Subscription:
    """``async with broadcast.subscribe(...) as sub: async for event in sub: ...``

    Holds at most ``MAX_QUEUE`` undelivered events; one more and the
    subscription ends with `SubscriberLagged` once the queued events are read.
    Leaving the ``async with`` block (normally, by exception or cancellation)
    unsubscribes. Iteration stops when the broadcast is closed.
    """

    # Slots, and no second deque until a replay needs one: an idle subscriber
    # costs about 1 KB (see docs/performance).
    __slots__ = (
        "_backlog",
        "_ended",
        "_held",
        "_history",
        "_hub",
        "_hubs",
        "_id_order",
        "_lagged",
        "_max_queue",
        "_queue",
        "_replayed",
        "_since",
        "_waiter",
        "channels",
        "last_ids",
    )

    def __init__(self, hubs: Hubs, channels: tuple[str, ...], since: Since, history: int) -> None:
        if not channels:
            raise TypeError("subscribe() needs at least one channel name")
        self.channels = tuple(dict.fromkeys(validate_channel_name(c) for c in channels))
        self._hubs = hubs
        self._since = _since_by_channel(self.channels, since)
        if not is_whole_number(history, 0):
            raise ValueError(f"history must be a whole number >= 0, not {history!r}")
        self._history = history
        config = hubs.settings.config
        if (self._since or history) and not config.backend_class.supports_history:
            raise HistoryNotSupported.on(config.alias, config.backend_class)
        self._max_queue = hubs.settings.max_queue
        self._queue: deque[Event] = deque()
        # Replayed events (history, and live events held back while it was read)
        # come first and do not count against MAX_QUEUE.
        self._backlog: deque[Event] | None = None
        self._held: dict[str, list[Event]] | None = None
        # Per replayed channel, the order key of the last replayed event: live
        # events up to it may still arrive after the history read (delivery
        # takes time on a real backend) and are dropped as duplicates.
        self._replayed: dict[str, tuple[int, ...]] | None = None
        self._id_order: Callable[[str], tuple[int, ...]] | None = None
        # Set to False by a delivery, to True when a get()'s timeout expires.
        self._waiter: asyncio.Future[bool] | None = None
        self._lagged = False
        self._ended = False
        self._hub: Hub | None = None
        self.last_ids: dict[str, str | None] = dict(self._since)

    def __repr__(self) -> str:
        return f"<Subscription {self._hubs.settings.alias!r} {', '.join(self.channels)}>"

    async def __aenter__(self) -> Subscription:
        hub = self._hubs.current()
        if self._since:
            await hub.check_resumable(self._since)
        replay = [c for c in self.channels if c in self._since or self._history]
        # Live events of replayed channels wait in _held until their history is
        # queued, so the seam has neither a gap nor a duplicate.
        if replay:
            self._held = {channel: [] for channel in replay}
            self._backlog = deque()
        self._hub = hub
        await hub.attach(self, self.channels)
        try:
            for channel in replay:
                await self._replay(hub, channel)
        except loops.ERRORS_AND_CANCELLATION:
            await hub.release(self)
            raise
        return self

    async def _replay(self, hub: Hub, channel: str) -> None:
        since = self._since.get(channel)
        limit = None if channel in self._since else self._history
        past = await hub.history(channel, since, limit)
        last = past[-1].id if past else since
        assert self._held is not None and self._backlog is not None
        held = self._held.pop(channel)
        if last is not None:
            after = hub.id_order(last)
            held = [e for e in held if e.id is not None and hub.id_order(e.id) > after]
            if not held:
                self._id_order = hub.id_order
                self._replayed = {**(self._replayed or {}), channel: after}
        self._backlog.extend(past)
        self._backlog.extend(held)
        self._wake()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._hub is not None:
            hub, self._hub = self._hub, None
            await hub.release(self)
        self._ended = True

    def __aiter__(self) -> Subscription:
        return self

    def __anext__(self) -> Coroutine[Any, Any, Event]:
        return self.get()

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; `asyncio.TimeoutError` after ``timeout`` seconds,
        `StopAsyncIteration` once the subscription has ended.

        Waits on a plain future with a timer beside it, not through
        ``asyncio.wait_for``: on Python 3.10 and 3.11 that one returns the event
        instead of raising when the caller is cancelled just as an event arrives
        (CPython gh-86296), and a cancelled reader would read on forever."""
        timer: asyncio.TimerHandle | None = None
        timed_out = False
        try:
            while True:
                if self._backlog:
                    event = self._backlog.popleft()
                elif self._queue:
                    event = self._queue.popleft()
                elif self._lagged:
                    raise SubscriberLagged(self.last_ids, self.channels)
                elif self._ended:
                    raise StopAsyncIteration
                elif timed_out:
                    raise asyncio.TimeoutError
                else:
                    loop = asyncio.get_running_loop()
                    waiter = self._waiter = loop.create_future()
                    if timeout is not None and timer is None:
                        timer = loop.call_later(timeout, self._wake, True)
                    try:
                        timed_out = await waiter
                    finally:
                        self._waiter = None
                    continue
                self.last_ids[event.channel] = event.id
                return event
        finally:
            if timer is not None:
                timer.cancel()

    @property
    def pending(self) -> int:
        """How many received events wait to be read."""
        return len(self._queue) + len(self._backlog or ())

    # -- the hub's Subscriber protocol -------------------------------------------

    def deliver(self, event: Event) -> bool:
        """Queue ``event``; ``False`` when the queue is full (the hub then drops us)."""
        if self._replayed and event.id is not None and event.channel in self._replayed:
            assert self._id_order is not None
            if self._id_order(event.id) <= self._replayed[event.channel]:
                return True  # already replayed from history
            del self._replayed[event.channel]
        if self._held:
            held = self._held.get(event.channel)
            if held is not None:
                if len(held) >= self._max_queue:
                    self._lag()
                    return False
                held.append(event)
                return True
        if len(self._queue) >= self._max_queue:
            self._lag()
            return False
        self._queue.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(False)
        return True

    def _lag(self) -> None:
        self._lagged = True
        self._wake()

    def hub_closed(self) -> None:
        """End the subscription: its hub closed."""
        self._ended = True
        self._hub = None
        self._wake()

    def _wake(self, timed_out: bool = False) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(timed_out)


def _since_by_channel(channels: tuple[str, ...], since: Since) -> dict[str, str]:
    if since is None:
        return {}
    if isinstance(since, str):
        if len(channels) > 1:
            raise ValueError(
                "since= must be a mapping {channel: event_id} when subscribing to several channels"
            )
        return {channels[0]: since}
    if isinstance(since, Mapping):
        unknown = set(since) - set(channels)
        if unknown:
            raise ValueError(
                f"since= names channels not subscribed to: {', '.join(sorted(unknown))}"
            )
        positions = {channel: since.get(channel) for channel in channels}
        return {
            channel: position for channel, position in positions.items() if position is not None
        }
    raise TypeError(f"since= must be an event id, a mapping or None, not {since!r}")
