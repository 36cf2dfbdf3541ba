"""One event loop's link to one backend.

The hub keeps one upstream subscription per channel however many local
subscribers share it, decodes each incoming event once and hands it to every
subscriber's bounded queue without awaiting any of them. It coalesces
concurrent publishes into pipelined batches, and owns what would otherwise be
every backend's chore: resume positions (with the baseline of a channel that
had no event yet) and healing connections after any connection error.
It knows its owner only through `HubSettings`, its subscribers only through
the `Subscriber` protocol.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from functools import partial
from typing import Protocol, TypeVar

from .backends.base import BaseBackend, RawEvent
from .batching import PublishBatcher
from .events import Event
from .exceptions import BackendUnavailable, HistoryGap
from .hub_settings import HubSettings, HubStats
from .masking import redact
from .signing import Decoder, Signer

logger = logging.getLogger("django_broadcaster")
T = TypeVar("T")

FIRST_RETRY_DELAY = 0.05
MAX_RETRY_DELAY = 2.0


class Subscriber(Protocol):
    """What the hub routes events to (a `Subscription`, a channel layer's group sink)."""

    @property
    def channels(self) -> tuple[str, ...]: ...

    def deliver(self, event: Event) -> bool:
        """Take ``event`` without waiting; ``False`` when full (the hub then detaches it)."""

    def hub_closed(self) -> None:
        """The hub closed: no more events will come."""


class Hub:
    def __init__(
        self,
        settings: HubSettings,
        loop: asyncio.AbstractEventLoop,
        on_close: Callable[[Hub], None],
    ) -> None:
        self.settings = settings
        self.loop = loop
        self.backend: BaseBackend = settings.config.backend_class(settings.config)
        #: A sortable key for one of this backend's event ids.
        self.id_order = self.backend.id_order
        self._stats = HubStats()
        self._on_close = on_close
        self._signer = Signer(settings.signing_keys) if settings.signing_keys else None
        self._decoder = Decoder(settings.alias, settings.serializer, self._signer)
        #: ``hub.decode(channel, payload, event_id)``: the `Event`, or ``None`` (logged,
        #: counted) when the payload fails verification or does not decode.
        self.decode = self._decoder.decode
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._upstream: set[str] = set()
        self._dirty: set[str] = set()
        self._positions: dict[str, str | None] = {}
        self._lock = asyncio.Lock()
        self._started = False
        self._closed = False
        # Bumped by every successful reconnection: a failure seen before it is healed.
        self._generation = 0
        self._lost_at: float | None = None  # when the current outage was noticed
        self._reader: asyncio.Task[None] | None = None
        self._batcher = PublishBatcher(loop, self._send, self._closed_error)
        #: ``await hub.publish(channel, payload)``: the event's id; concurrent publishes
        #: of this loop go out in batches (see `PublishBatcher`).
        self.publish = self._batcher.publish
        # Closed by loop.shutdown_asyncgens() (asyncio.run, asgiref, pytest-asyncio): no
        # connection outlives its loop, so "Event loop is closed" cannot happen.
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

        Later outages are healed by `_renew`, from the reader or a publisher.
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
        """Run ``operation``, healing the connection and retrying after connection
        errors with backoff for ``TIMEOUT`` seconds."""
        deadline = self.loop.time() + self.settings.timeout
        delay = FIRST_RETRY_DELAY
        while True:
            generation = self._generation
            try:
                return await operation()
            except self.backend.connection_errors as exc:
                if self._closed:
                    raise self._closed_error() from None
                if self.loop.time() + delay > deadline:
                    raise BackendUnavailable(
                        f"could not {action} broadcast backend {self.settings.alias!r} "
                        f"({self.settings.safe_location}) within {self.settings.timeout}s: "
                        f"{self._describe(exc)}"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY)
                if not self._started:
                    with suppress(Exception):
                        await self.backend.close()
                    continue
                self._lost(exc, generation)
                with suppress(*self.backend.connection_errors):
                    await self._renew(generation)

    def _lost(self, exc: BaseException, generation: int) -> None:
        """Note a connection failure seen on connection ``generation``; an outage is
        counted and logged once, and not at all if it was healed meanwhile."""
        if self._lost_at is None and generation == self._generation:
            self._lost_at = self.loop.time()
            self._stats.disconnects += 1
            logger.warning(
                "broadcast backend %r lost its connection (%s); reconnecting",
                self.settings.alias,
                self._describe(exc),
            )

    async def _renew(self, generation: int) -> None:
        """Close and reopen the backend and re-subscribe every wanted channel from
        its position, unless that was done since ``generation``. Raises what
        ``connect()`` or ``subscribe()`` raise; the backend is then left closed."""
        async with self._lock:
            if self._closed or self._generation != generation:
                return
            with suppress(Exception):
                await self.backend.close()
            await self.backend.connect()
            channels = set(self._subscribers)
            self._upstream = set()
            await self._subscribe_upstream(channels)
            # Subscribers that came or went meanwhile.
            self._dirty = channels.symmetric_difference(self._subscribers)
            await self._apply_dirty()
            self._generation += 1
            lost_at, self._lost_at = self._lost_at, None
            if lost_at is None:
                return
            outage = self.loop.time() - lost_at
            self._stats.reconnects += 1
            self._stats.outage_seconds += outage
            logger.warning(
                "broadcast backend %r reconnected after %.2fs; %d channel(s) re-subscribed%s",
                self.settings.alias,
                outage,
                len(channels),
                "" if self.backend.supports_history else "; events sent meanwhile were lost",
            )

    async def _reconnect(self, exc: BaseException, generation: int) -> None:
        """After the reader's failure: renew until it works (or another task did)."""
        self._lost(exc, generation)
        delay = FIRST_RETRY_DELAY
        while not self._closed and self._generation == generation:
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)
            try:
                await self._renew(generation)
            except Exception as retry_exc:
                logger.debug(
                    "reconnect to %r failed: %s", self.settings.alias, self._describe(retry_exc)
                )

    async def _read_forever(self) -> None:
        while not self._closed:
            generation = self._generation
            try:
                batch = await self.backend.receive()
            except Exception as exc:
                if self._closed:
                    return
                if not isinstance(exc, self.backend.connection_errors):
                    trace = "".join(traceback.format_exception(exc))
                    logger.error(
                        "broadcast backend %r reader failed unexpectedly:\n%s",
                        self.settings.alias,
                        redact(trace, self.backend.location),
                    )
                await self._reconnect(exc, generation)
                continue
            self._dispatch(batch)

    def _dispatch(self, batch: Sequence[RawEvent]) -> None:
        lagged: list[Subscriber] = []
        for channel, payload, event_id in batch:
            subscribers = self._subscribers.get(channel)
            if subscribers is None:
                continue
            if event_id is not None:  # an id-less event must not erase the resume point
                self._positions[channel] = event_id
            event = self.decode(channel, payload, event_id)
            if event is None:
                continue
            self._stats.received += 1
            for subscriber in subscribers:
                if not subscriber.deliver(event):
                    lagged.append(subscriber)
        for subscriber in lagged:
            self._stats.lagged += 1
            self.detach(subscriber)

    # -- subscriptions -------------------------------------------------------

    async def attach(self, subscriber: Subscriber, channels: Iterable[str]) -> None:
        """Route ``channels`` to ``subscriber``; subscribe upstream where needed."""
        for channel in channels:
            subscribers = self._subscribers.get(channel)
            if subscribers is None:
                subscribers = self._subscribers[channel] = set()
                self._dirty.add(channel)
            subscribers.add(subscriber)
        try:
            await asyncio.shield(self._sync_upstream())  # cancelled: nothing left pending
        except asyncio.CancelledError:
            await self.release(subscriber)
            raise
        except Exception:
            self.detach(subscriber)
            raise

    def detach(self, subscriber: Subscriber) -> None:
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
        whoever takes the lock applies every change queued so far. During an
        outage the reconnection subscribes whatever is wanted once it succeeds."""
        if not self._dirty:
            return
        await self._start()
        async with self._lock:
            if self._closed:
                return
            if self._dirty and self._lost_at is None:
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
        add = [c for c in dirty if c in self._subscribers and c not in self._upstream]
        if remove:
            self._upstream.difference_update(remove)
            await self.backend.unsubscribe(remove)
        if add:
            await self._subscribe_upstream(add)

    async def _subscribe_upstream(self, channels: Iterable[str]) -> None:
        """Subscribe ``channels`` at the backend from their positions; keep the
        baselines it reports for channels that had none."""
        positions = {channel: self._positions.get(channel) for channel in channels}
        self._upstream.update(positions)
        baselines = await self.backend.subscribe(positions)
        for channel, baseline in baselines.items():
            if channel in self._subscribers:
                self._positions.setdefault(channel, baseline)

    async def release(self, subscriber: Subscriber) -> None:
        """Detach ``subscriber``; unsubscribe upstream what nobody wants (even if cancelled)."""
        self.detach(subscriber)
        try:
            await asyncio.shield(self._sync_upstream())
        except Exception as exc:
            logger.debug("unsubscribe on %r failed: %s", self.settings.alias, self._describe(exc))

    # -- publishing ----------------------------------------------------------

    def sign(self, channel: str, payload: bytes) -> bytes:
        """``payload`` as it travels on ``channel``: signed when ``SIGNING_KEYS`` are set."""
        return payload if self._signer is None else self._signer.sign(channel, payload)

    async def call(self, action: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run backend ``operation`` (a work-queue call), healing connections as publish does."""
        await self._start()
        return await self._retrying(action, operation)

    async def _send(self, events: Sequence[tuple[str, bytes]]) -> list[str | Exception | None]:
        await self._start()
        events = [(channel, self.sign(channel, payload)) for channel, payload in events]
        if len(events) == 1:
            result = await self._retrying("publish to", partial(self.backend.publish, *events[0]))
            results: list[str | Exception | None] = [result]
        else:
            results = await self._retrying("publish to", partial(self.backend.publish_many, events))
        self._stats.published += sum(not isinstance(result, Exception) for result in results)
        return results

    async def check_resumable(self, positions: Mapping[str, str]) -> None:
        """Raise ``ValueError`` for a position that is no id of this backend, and
        `HistoryGap` for channels whose history dropped events after their position."""
        for event_id in positions.values():
            self.id_order(event_id)
        await self._start()
        gaps = [
            channel
            for channel, event_id in positions.items()
            if not await self._retrying(
                "read history from", partial(self.backend.retains, channel, event_id)
            )
        ]
        if gaps:
            raise HistoryGap(self.settings.alias, gaps)

    async def history(
        self, channel: str, since: str | None, limit: int | None, oldest_first: bool = False
    ) -> list[Event]:
        """Decoded retained events of ``channel`` (`BaseBackend.history`); ``oldest_first``: the
        oldest ``limit`` after ``since``, paged on past undecodable ones (fewer: no more)."""
        await self._start()
        events: list[Event] = []
        paging = oldest_first and limit is not None
        while True:
            count = (limit or 0) - len(events)
            read = partial(self.backend.history_page, channel, since, count)
            if not paging:
                read = partial(self.backend.history, channel, since, limit)
            raw = await self._retrying("read history from", read)
            events += filter(None, (self.decode(channel, p, event_id) for _, p, event_id in raw))
            if not paging or len(raw) < count or len(events) == limit or raw[-1].id is None:
                return events
            since = raw[-1].id

    @property
    def upstream(self) -> frozenset[str]:
        """The channels subscribed at the backend."""
        return frozenset(self._upstream)

    @property
    def subscribers(self) -> dict[str, frozenset[Subscriber]]:
        """Local subscribers per channel (a snapshot)."""
        return {channel: frozenset(group) for channel, group in self._subscribers.items()}

    def stats(self) -> HubStats:
        """This hub's counters, with its current subscriber and upstream counts."""
        subscribers = {s for group in self._subscribers.values() for s in group}
        return replace(
            self._stats,
            undecodable=self._decoder.undecodable,
            forged=self._decoder.forged,
            subscribers=len(subscribers),
            upstream_channels=len(self._upstream),
        )

    # -- shutdown ------------------------------------------------------------

    async def close(self) -> None:
        """Close connections and end every subscription of this hub."""
        if self._closed:
            return
        self._closed = True
        subscribers = {s for group in self._subscribers.values() for s in group}
        self._subscribers.clear()
        for subscriber in subscribers:
            subscriber.hub_closed()
        with suppress(Exception):
            await self.backend.close()
        await self._batcher.close()
        reader = self._reader
        if reader is not None and not reader.done() and reader is not asyncio.current_task():
            reader.cancel()
            with suppress(BaseException):
                await reader
        self._on_close(self)

    def _closed_error(self) -> BackendUnavailable:
        return BackendUnavailable(f"broadcast backend {self.settings.alias!r} was closed")
