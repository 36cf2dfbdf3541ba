"""LoopbackBackend: a small backend with history, written as a third party would.

It uses only the public contract (``django_broadcaster.backends.base``, the
option helpers); its "server" is this module, shared by the event loops of one
process. ``disconnect()`` drops every connection, as a network failure would.
docs/backends/custom.rst shows this file; tests/test_backend_conformance.py
runs the conformance kit on it.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

from django_broadcaster.backends.base import BackendConfig, BaseBackend, RawEvent, location_error
from django_broadcaster.options import is_whole_number, option_error

# The "server". Instances run on different event loops in different threads,
# so everything here is guarded by one lock.
_lock = threading.Lock()
_issued = 0  # the last event id handed out
_kept: dict[str, deque[tuple[str, bytes]]] = {}  # wire name -> newest (id, payload)
_dropped: dict[str, str] = {}  # wire name -> id of the newest event no longer kept
_listeners: dict[str, set[LoopbackBackend]] = {}  # wire name -> subscribed instances
_connected: set[LoopbackBackend] = set()


def disconnect() -> None:
    """Drop every connection: events stop arriving, waiting ``receive()`` calls
    raise, publishing fails until the hub reconnects."""
    with _lock:
        dropped = list(_connected)
        _connected.clear()
        for listeners in _listeners.values():
            listeners.difference_update(dropped)
    for backend in dropped:
        backend._post(None)


class LoopbackBackend(BaseBackend):
    """Keeps the newest ``OPTIONS["KEEP"]`` events of each channel."""

    supports_history = True
    default_options: ClassVar[Mapping[str, Any]] = {"KEEP": 100}
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = (ConnectionError,)

    @classmethod
    def check_location(cls, location: str) -> None:
        if location:
            raise location_error(f"LoopbackBackend takes no LOCATION, not {location!r}", "omit it")

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        if not is_whole_number(options["KEEP"], 1):
            raise option_error("KEEP", "a whole number >= 1", options["KEEP"])

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)  # sets alias, location, key_prefix, options; no I/O here
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[RawEvent | None] = asyncio.Queue()
        self._channels: set[str] = set()

    def _online(self) -> None:
        """Call with ``_lock`` held: raise when the connection is gone."""
        if self not in _connected:
            raise ConnectionResetError("loopback connection lost")

    def _post(self, item: RawEvent | None) -> None:
        """From any thread: queue ``item`` for ``receive()`` on this instance's loop.
        ``None`` hangs up: a waiting ``receive()`` wakes and raises."""
        loop, inbox = self._loop, self._inbox
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(inbox.put_nowait, item)

    # -- connection ------------------------------------------------------------

    async def connect(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()  # a fresh start: nothing from before
        with _lock:
            _connected.add(self)

    async def close(self) -> None:
        with _lock:
            _connected.discard(self)
            for channel in self._channels:
                _listeners.get(self.wire_name(channel), set()).discard(self)
        self._channels.clear()
        self._post(None)

    # -- traffic ---------------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> str | None:
        global _issued
        wire = self.wire_name(channel)
        with _lock:
            self._online()
            _issued += 1
            event_id = str(_issued)
            kept = _kept.setdefault(wire, deque(maxlen=self.options["KEEP"]))
            if len(kept) == kept.maxlen:
                _dropped[wire] = kept[0][0]  # about to fall off
            kept.append((event_id, payload))
            # Handed over under the lock, so every listener gets ids in order.
            for backend in _listeners.get(wire, ()):
                backend._post(RawEvent(backend.channel_name(wire), payload, event_id))
        return event_id

    async def subscribe(self, positions: Mapping[str, str | None]) -> Mapping[str, str]:
        baselines: dict[str, str] = {}
        with _lock:
            self._online()
            for channel, position in positions.items():
                wire = self.wire_name(channel)
                kept = _kept.get(wire, ())
                if position is None:  # from now: remember where "now" was
                    baselines[channel] = kept[-1][0] if kept else "0"
                else:  # resuming: what was missed comes first
                    after = self.id_order(position)
                    for event_id, payload in kept:
                        if self.id_order(event_id) > after:
                            self._inbox.put_nowait(RawEvent(channel, payload, event_id))
                self._channels.add(channel)
                _listeners.setdefault(wire, set()).add(self)
        return baselines

    async def unsubscribe(self, channels: Collection[str]) -> None:
        with _lock:
            for channel in channels:
                self._channels.discard(channel)
                _listeners.get(self.wire_name(channel), set()).discard(self)

    async def receive(self) -> Sequence[RawEvent]:
        inbox = self._inbox
        batch = [await inbox.get()]
        while not inbox.empty():  # everything already there, in one batch
            batch.append(inbox.get_nowait())
        events = [event for event in batch if event is not None]
        if len(events) < len(batch):  # None: hung up
            raise ConnectionResetError("loopback connection closed")
        return events

    async def history(
        self, channel: str, since: str | None, limit: int | None
    ) -> Sequence[RawEvent]:
        with _lock:
            self._online()
            kept = list(_kept.get(self.wire_name(channel), ()))
        after = self.id_order(since) if since is not None else None
        events = [
            RawEvent(channel, payload, event_id)
            for event_id, payload in kept
            if after is None or self.id_order(event_id) > after
        ]
        return events if limit is None else events[max(len(events) - limit, 0) :]

    async def history_page(self, channel: str, since: str | None, count: int) -> Sequence[RawEvent]:
        after = self.id_order(since) if since is not None else None
        with _lock:
            self._online()
            kept = _kept.get(self.wire_name(channel), ())
            newer = ((i, p) for i, p in kept if after is None or self.id_order(i) > after)
            page = list(itertools.islice(newer, max(count, 0)))  # copies one page only
        return [RawEvent(channel, payload, event_id) for event_id, payload in page]

    async def retains(self, channel: str, event_id: str) -> bool:
        after = self.id_order(event_id)  # a ValueError for what is not an id
        with _lock:
            self._online()
            dropped = _dropped.get(self.wire_name(channel))
            issued = _issued
        if after > self.id_order(str(issued)):
            return False  # no event had this id yet: a made-up position
        return dropped is None or self.id_order(dropped) <= after
