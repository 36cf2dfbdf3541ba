"""`Broadcast`: the object behind ``broadcasts[alias]``.

One per alias per process. It keeps one `Hub` (connections, upstream
subscriptions, reader) per event loop that uses it, so every request served by
a process's loop shares one subscription per channel, and sync callers share
the hub of the background bridge loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from . import bridge
from .backends.base import BackendConfig, mask_password
from .events import Event, validate_channel_name
from .hub import Hub, HubStats
from .serializers import Serializer
from .subscription import Since, Subscription


class Broadcast:
    """Publish to and subscribe on the channels of one configured backend."""

    def __init__(
        self, config: BackendConfig, *, serializer: Serializer, max_queue: int, timeout: float
    ) -> None:
        self.config = config
        self.alias = config.alias
        self.serializer = serializer
        self.max_queue = max_queue
        self.timeout = timeout
        self.safe_location = mask_password(config.location)
        self._hubs: dict[asyncio.AbstractEventLoop, Hub] = {}
        self._hubs_lock = threading.Lock()
        self._observers: list[Callable[[Event], None]] = []

    def __repr__(self) -> str:
        return (
            f"<Broadcast {self.alias!r} {self.config.backend_class.__name__} {self.safe_location}>"
        )

    @property
    def supports_history(self) -> bool:
        """Whether ``since=``, ``history=`` and ``history()`` work on this backend."""
        return self.config.backend_class.supports_history

    # -- hubs ----------------------------------------------------------------

    def _hub(self) -> Hub:
        loop = asyncio.get_running_loop()
        hub = self._hubs.get(loop)
        if hub is None:
            with self._hubs_lock:
                for stale in [lp for lp in self._hubs if lp.is_closed()]:
                    del self._hubs[stale]
                hub = self._hubs.get(loop)
                if hub is None:
                    hub = self._hubs[loop] = Hub(self, loop)
        return hub

    def _forget(self, hub: Hub) -> None:
        with self._hubs_lock:
            if self._hubs.get(hub.loop) is hub:
                del self._hubs[hub.loop]

    # -- publishing ----------------------------------------------------------

    def _encode(self, channel: str, message: Any) -> bytes:
        validate_channel_name(channel)
        try:
            return self.serializer.dumps(message)
        except TypeError as exc:
            raise TypeError(
                f"cannot publish on {channel!r}: the message cannot be encoded as "
                f"{self.serializer.name} ({exc}); nothing was sent"
            ) from exc

    async def apublish(self, channel: str, message: Any, *, on_commit: bool = False) -> str | None:
        """Publish ``message`` on ``channel`` to every subscriber on every host.

        Returns the event id (``None`` on a backend without history). With
        ``on_commit=True`` it is sent when the current database transaction
        commits (nothing on rollback) and ``None`` is returned.
        Raises `TypeError` if the message cannot be encoded (nothing is sent)
        and `BackendUnavailable` if the backend stays unreachable for ``TIMEOUT``.
        """
        payload = self._encode(channel, message)
        if on_commit:
            await sync_to_async(self._send_on_commit)(channel, message, payload)
            return None
        if bridge.on_throwaway_loop():
            return await bridge.await_on_bridge(self._send(channel, message, payload))
        return await self._send(channel, message, payload)

    def publish(self, channel: str, message: Any, *, on_commit: bool = False) -> str | None:
        """Sync `apublish`, for sync views, signals, threads and commands."""
        payload = self._encode(channel, message)
        if on_commit:
            self._send_on_commit(channel, message, payload)
            return None
        return bridge.run(self._send(channel, message, payload))

    def _send_on_commit(self, channel: str, message: Any, payload: bytes) -> None:
        transaction.on_commit(lambda: bridge.run(self._send(channel, message, payload)))

    async def _send(self, channel: str, message: Any, payload: bytes) -> str | None:
        event_id = await self._hub().publish(channel, payload)
        if self._observers:
            event = Event(channel, message, event_id)
            for observer in self._observers:
                observer(event)
        return event_id

    # -- subscribing and history ----------------------------------------------

    def subscribe(self, *channels: str, since: Since = None, history: int = 0) -> Subscription:
        """Subscribe to ``channels``; use as ``async with ... as sub: async for event in sub``.

        ``since=ID`` (a mapping ``{channel: ID}`` for several channels) first
        replays every retained event after that id; ``history=N`` the last N of
        each channel. Then events arrive live, with no gap and no duplicate.
        """
        return Subscription(self, channels, since, history)

    async def ahistory(
        self, channel: str, *, since: str | None = None, limit: int | None = 100
    ) -> list[Event]:
        """Retained events of ``channel`` after ``since``, oldest first, at most ``limit``
        (the newest ones). Raises `HistoryNotSupported` on a backend without history."""
        validate_channel_name(channel)
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a whole number >= 0 or None, not {limit!r}")
        if bridge.on_throwaway_loop():
            return await bridge.await_on_bridge(self.ahistory(channel, since=since, limit=limit))
        return await self._hub().history(channel, since, limit)

    def history(
        self, channel: str, *, since: str | None = None, limit: int | None = 100
    ) -> list[Event]:
        """Sync `ahistory`."""
        return bridge.run(self.ahistory(channel, since=since, limit=limit))

    # -- state ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters summed over every event loop using this alias (published, received,
        undecodable, lagged, disconnects, reconnects, outage_seconds)."""
        total = HubStats()
        with self._hubs_lock:
            hubs = list(self._hubs.values())
        for hub in hubs:
            for name, value in vars(hub.stats).items():
                setattr(total, name, getattr(total, name) + value)
        return dict(vars(total))

    async def aclose(self) -> None:
        """Close this alias's connections on every loop; open subscriptions end."""
        with self._hubs_lock:
            hubs = list(self._hubs.values())
        for hub in hubs:
            await _close_from(hub, asyncio.get_running_loop())

    def close(self) -> None:
        """Sync `aclose`."""
        with self._hubs_lock:
            hubs = list(self._hubs.values())
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for hub in hubs:
            if hub.loop is current:
                # Cannot wait here: the close finishes once this caller yields.
                task = hub.loop.create_task(hub.close())
                _closing.add(task)
                task.add_done_callback(_closing.discard)
            elif hub.loop.is_running():
                with suppress(Exception):
                    asyncio.run_coroutine_threadsafe(hub.close(), hub.loop).result(self.timeout)
            else:
                self._forget(hub)


#: Closes started from sync code on a running loop; kept so they are not collected.
_closing: set[asyncio.Task[None]] = set()


async def _close_from(hub: Hub, current: asyncio.AbstractEventLoop) -> None:
    if hub.loop is current:
        await hub.close()
    elif hub.loop.is_running():
        with suppress(Exception):
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(hub.close(), hub.loop))
    else:
        hub.front._forget(hub)
