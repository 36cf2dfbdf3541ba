"""One event loop's link to one backend.

The hub keeps a single upstream subscription per channel however many local
subscribers share it, decodes each incoming event once and hands it to every
subscriber's bounded queue without awaiting any of them. It owns reconnection
(with backoff, re-subscribing every channel from the last id it saw) and
coalesces concurrent publishes into pipelined batches.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .backends.base import BaseBackend, RawEvent, redact
from .events import Event
from .exceptions import BackendUnavailable

if TYPE_CHECKING:
    from .broadcast import Broadcast
    from .subscription import Subscription

logger = logging.getLogger("django_broadcaster")
T = TypeVar("T")

FIRST_RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 2.0
PUBLISH_BATCH = 500


@dataclass
class HubStats:
    """Counters of one hub; `Broadcast.stats` adds them up over event loops."""

    published: int = 0
    received: int = 0
    undecodable: int = 0
    lagged: int = 0
    disconnects: int = 0
    reconnects: int = 0
    outage_seconds: float = 0.0


class Hub:
    def __init__(self, front: Broadcast, loop: asyncio.AbstractEventLoop) -> None:
        self.front = front
        self.loop = loop
        self.backend: BaseBackend = front.config.backend_class(front.config)
        self.stats = HubStats()
        self._loads = front.serializer.loads
        self._subscribers: dict[str, set[Subscription]] = {}
        self._upstream: set[str] = set()
        self._dirty: set[str] = set()
        self._positions: dict[str, str | None] = {}
        self._lock = asyncio.Lock()
        self._started = False
        self._reconnecting = False
        self._closed = False
        self._reader: asyncio.Task[None] | None = None
        self._publishing = False
        self._queued: list[tuple[str, bytes, asyncio.Future[str | None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # Closed by the loop itself when it shuts down (asyncio.run, asgiref,
        # pytest-asyncio all call loop.shutdown_asyncgens()), so connections
        # never outlive their loop and "Event loop is closed" cannot happen.
        self._lifetime = self._close_on_loop_shutdown()

    async def _close_on_loop_shutdown(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.close()

    def _describe(self, exc: BaseException) -> str:
        return redact(f"{type(exc).__name__}: {exc}", self.backend.location)

    # -- connection ----------------------------------------------------------

    async def _start(self) -> None:
        """Connect for the first time, retrying with backoff until ``TIMEOUT``.

        Later outages are the reader's business (`_reconnect`) and publishers'
        (`_retrying`); this runs once per hub.
        """
        if self._started:
            return
        async with self._lock:
            if self._started:
                return
            await self._retrying("connect to", self.backend.connect)
            await self._lifetime.__anext__()
            self._started = True

    async def _retrying(self, action: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation``, retrying connection errors with backoff for ``TIMEOUT`` seconds."""
        deadline = self.loop.time() + self.front.timeout
        delay = FIRST_RETRY_DELAY
        while True:
            try:
                return await operation()
            except self.backend.connection_errors as exc:
                if self._closed:
                    raise self._closed_error() from None
                if self.loop.time() + delay > deadline:
                    raise BackendUnavailable(
                        f"could not {action} broadcast backend {self.front.alias!r} "
                        f"({self.front.safe_location}) within {self.front.timeout}s: "
                        f"{self._describe(exc)}"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)

    async def _reconnect(self, exc: BaseException) -> None:
        """Reconnect until it works, then re-subscribe every channel where it left off."""
        self.stats.disconnects += 1
        lost_at = self.loop.time()
        logger.warning(
            "broadcast backend %r lost its connection (%s); reconnecting",
            self.front.alias,
            self._describe(exc),
        )
        delay = FIRST_RETRY_DELAY
        self._reconnecting = True
        try:
            async with self._lock:
                while not self._closed:
                    with suppress(Exception):
                        await self.backend.close()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_RETRY_DELAY)
                    try:
                        await self.backend.connect()
                        channels = set(self._subscribers)
                        await self.backend.subscribe({c: self._positions.get(c) for c in channels})
                        self._upstream = channels
                        # Subscribers that came or went meanwhile.
                        self._dirty = channels.symmetric_difference(self._subscribers)
                        await self._apply_dirty()
                    except Exception as retry_exc:
                        logger.debug(
                            "reconnect to %r failed: %s",
                            self.front.alias,
                            self._describe(retry_exc),
                        )
                        continue
                    outage = self.loop.time() - lost_at
                    self.stats.reconnects += 1
                    self.stats.outage_seconds += outage
                    logger.warning(
                        "broadcast backend %r reconnected after %.2fs; %d channel(s) "
                        "re-subscribed%s",
                        self.front.alias,
                        outage,
                        len(channels),
                        ""
                        if self.backend.supports_history
                        else "; events sent meanwhile were lost",
                    )
                    return
        finally:
            self._reconnecting = False

    async def _read_forever(self) -> None:
        while not self._closed:
            try:
                batch = await self.backend.receive()
            except Exception as exc:
                if self._closed:
                    return
                if not isinstance(exc, self.backend.connection_errors):
                    trace = "".join(traceback.format_exception(exc))
                    logger.error(
                        "broadcast backend %r reader failed unexpectedly:\n%s",
                        self.front.alias,
                        redact(trace, self.backend.location),
                    )
                await self._reconnect(exc)
                continue
            self._dispatch(batch)

    def _dispatch(self, batch: Sequence[RawEvent]) -> None:
        lagged: list[Subscription] = []
        for channel, payload, event_id in batch:
            subscribers = self._subscribers.get(channel)
            if subscribers is None:
                continue
            if event_id is not None:  # an id-less event must not erase the resume point
                self._positions[channel] = event_id
            event = self.decode(channel, payload, event_id)
            if event is None:
                continue
            self.stats.received += 1
            for subscriber in subscribers:
                if not subscriber._push(event):
                    lagged.append(subscriber)
        for subscriber in lagged:
            self.stats.lagged += 1
            self.detach(subscriber)

    def decode(self, channel: str, payload: bytes, event_id: str | None) -> Event | None:
        """The `Event` for a raw payload, or ``None`` (logged) when it does not decode."""
        try:
            message = self._loads(payload)
        except Exception as exc:
            self.stats.undecodable += 1
            logger.warning(
                "skipped an undecodable %s payload on channel %r of %r (id %s, %d bytes): %s",
                self.front.serializer.name,
                channel,
                self.front.alias,
                event_id,
                len(payload),
                exc,
            )
            return None
        return Event(channel, message, event_id)

    # -- subscriptions -------------------------------------------------------

    async def attach(self, subscriber: Subscription, channels: Iterable[str]) -> None:
        """Route ``channels`` to ``subscriber``; subscribe upstream where needed."""
        for channel in channels:
            subscribers = self._subscribers.get(channel)
            if subscribers is None:
                subscribers = self._subscribers[channel] = set()
                self._dirty.add(channel)
            subscribers.add(subscriber)
        try:
            await self._sync_upstream()
        except BaseException:
            self.detach(subscriber)
            raise

    def detach(self, subscriber: Subscription) -> None:
        """Stop routing to ``subscriber``; channels nobody wants are unsubscribed soon."""
        for channel in subscriber.channels:
            subscribers = self._subscribers.get(channel)
            if subscribers is None or subscriber not in subscribers:
                continue
            subscribers.discard(subscriber)
            if not subscribers:
                del self._subscribers[channel]
                self._positions.pop(channel, None)
                self._dirty.add(channel)

    async def _sync_upstream(self) -> None:
        """Bring the backend's subscriptions in line with local subscribers, batched:
        whoever takes the lock applies every change queued so far."""
        if not self._dirty or self._reconnecting:
            return  # a reconnect subscribes whatever is wanted when it completes
        await self._start()
        async with self._lock:
            if self._closed or not self._dirty:
                return
            try:
                await self._apply_dirty()
            except self.backend.connection_errors:
                # Closing makes the reader notice now; it reconnects and
                # subscribes every wanted channel.
                with suppress(Exception):
                    await self.backend.close()
            if self._reader is None and self._subscribers:
                self._reader = self.loop.create_task(self._read_forever())

    async def _apply_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        remove = [c for c in dirty if c not in self._subscribers and c in self._upstream]
        add = {c: None for c in dirty if c in self._subscribers and c not in self._upstream}
        if remove:
            self._upstream.difference_update(remove)
            await self.backend.unsubscribe(remove)
        if add:
            self._upstream.update(add)
            await self.backend.subscribe(add)

    async def release(self, subscriber: Subscription) -> None:
        """Detach ``subscriber`` and unsubscribe upstream what nobody wants any more."""
        self.detach(subscriber)
        try:
            await self._sync_upstream()
        except Exception as exc:
            logger.debug("unsubscribe on %r failed: %s", self.front.alias, self._describe(exc))

    # -- publishing ----------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> str | None:
        """Publish; while a publish is in flight, later ones queue and go out in one batch."""
        if self._publishing:
            future: asyncio.Future[str | None] = self.loop.create_future()
            self._queued.append((channel, payload, future))
            return await future
        self._publishing = True
        try:
            return (await self._send([(channel, payload)]))[0]
        finally:
            if self._queued:
                self._flusher = self.loop.create_task(self._flush_queued())
            else:
                self._publishing = False

    async def _flush_queued(self) -> None:
        try:
            while self._queued:
                batch = self._queued[:PUBLISH_BATCH]
                del self._queued[:PUBLISH_BATCH]
                try:
                    ids = await self._send([(channel, payload) for channel, payload, _ in batch])
                except BaseException as exc:
                    failure = exc if isinstance(exc, Exception) else self._closed_error()
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(failure)
                    raise
                else:
                    for (*_, future), event_id in zip(batch, ids, strict=True):
                        if not future.done():
                            future.set_result(event_id)
        finally:
            self._publishing = False

    async def _send(self, events: Sequence[tuple[str, bytes]]) -> list[str | None]:
        await self._start()
        if len(events) == 1:
            channel, payload = events[0]
            ids = [
                await self._retrying("publish to", lambda: self.backend.publish(channel, payload))
            ]
        else:
            ids = await self._retrying("publish to", lambda: self.backend.publish_many(events))
        self.stats.published += len(events)
        return ids

    async def history(self, channel: str, since: str | None, limit: int | None) -> list[Event]:
        """Decoded retained events of ``channel`` (see `BaseBackend.history`)."""
        await self._start()
        raw = await self._retrying(
            "read history from", lambda: self.backend.history(channel, since, limit)
        )
        events = (self.decode(channel, payload, event_id) for _, payload, event_id in raw)
        return [event for event in events if event is not None]

    # -- shutdown ------------------------------------------------------------

    async def close(self) -> None:
        """Close connections and end every subscription of this hub."""
        if self._closed:
            return
        self._closed = True
        subscribers = {s for group in self._subscribers.values() for s in group}
        self._subscribers.clear()
        for subscriber in subscribers:
            subscriber._end()
        for *_, future in self._queued:
            if not future.done():
                future.set_exception(self._closed_error())
        self._queued.clear()
        with suppress(Exception):
            await self.backend.close()
        for task in (self._reader, self._flusher):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()
                with suppress(BaseException):
                    await task
        self.front._forget(self)

    def _closed_error(self) -> BackendUnavailable:
        return BackendUnavailable(f"broadcast backend {self.front.alias!r} was closed")
