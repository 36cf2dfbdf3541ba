"""`Broadcast`: the object behind ``broadcasts[alias]``.

One per alias per process: it validates and encodes what callers publish,
routes every call to the right event loop's hub (`Hubs`) and builds
subscriptions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from . import loops
from .backends.base import BackendConfig
from .events import Event, validate_channel_name
from .exceptions import MessageTooLarge
from .hub_settings import HubSettings
from .hubs import Hubs
from .serializers import Serializer
from .subscription import Since, Subscription


class Broadcast:
    """Publish to and subscribe on the channels of one configured backend."""

    def __init__(
        self,
        config: BackendConfig,
        *,
        serializer: Serializer,
        max_queue: int,
        timeout: float,
        max_message_bytes: int = 1024 * 1024,
        signing_keys: tuple[bytes, ...] = (),
    ) -> None:
        self.config = config
        self.alias = config.alias
        self.serializer = serializer
        self.max_queue = max_queue
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self.hubs = Hubs(
            HubSettings(config, serializer, max_queue, timeout, max_message_bytes, signing_keys)
        )
        self.safe_location = self.hubs.settings.safe_location
        #: Called with each `Event` this process publishes through this alias
        #: (``django_broadcaster.testing.capture`` uses it).
        self.observers: list[Callable[[Event], None]] = []
        #: Set when ``broadcasts`` dropped this instance (``BROADCAST_BACKENDS``
        #: changed): ``broadcasts[alias]`` now makes a new one.
        self.retired = False

    def __repr__(self) -> str:
        return (
            f"<Broadcast {self.alias!r} {self.config.backend_class.__name__} {self.safe_location}>"
        )

    @property
    def supports_history(self) -> bool:
        """Whether ``since=``, ``history=`` and ``history()`` work on this backend."""
        return self.config.backend_class.supports_history

    # -- publishing ----------------------------------------------------------

    def _encode(self, channel: str, message: Any) -> bytes:
        validate_channel_name(channel)
        try:
            payload = self.serializer.dumps(message)
        except (TypeError, ValueError) as exc:
            raise type(exc)(
                f"cannot publish on {channel!r}: the message cannot be encoded as "
                f"{self.serializer.name} ({exc}); nothing was sent"
            ) from exc
        if len(payload) > self.max_message_bytes:
            raise MessageTooLarge(
                f"cannot publish on {channel!r}: the message is {len(payload):,} bytes encoded, "
                f"over OPTIONS['MAX_MESSAGE_BYTES'] ({self.max_message_bytes:,}) of broadcast "
                f"backend {self.alias!r}; nothing was sent"
            )
        return payload

    async def apublish(self, channel: str, message: Any, *, on_commit: bool = False) -> str | None:
        """Publish ``message`` on ``channel`` to every subscriber on every host.

        Returns the event id (``None`` on a backend without history). With
        ``on_commit=True`` it is sent when the current database transaction
        commits (nothing on rollback) and ``None`` is returned.
        Raises `TypeError` or `ValueError` if the message cannot be encoded (NaN, say),
        `MessageTooLarge` over ``MAX_MESSAGE_BYTES`` (nothing is sent in either case)
        and `BackendUnavailable` if the backend stays unreachable for ``TIMEOUT``.
        """
        payload = self._encode(channel, message)
        if on_commit:
            await sync_to_async(self._send_on_commit)(channel, message, payload)
            return None
        return await loops.on_lasting_loop(self._send(channel, message, payload))

    def publish(self, channel: str, message: Any, *, on_commit: bool = False) -> str | None:
        """Sync `apublish`, for sync views, signals, threads and commands."""
        payload = self._encode(channel, message)
        if on_commit:
            self._send_on_commit(channel, message, payload)
            return None
        return loops.run(self._send(channel, message, payload))

    def _send_on_commit(self, channel: str, message: Any, payload: bytes) -> None:
        transaction.on_commit(lambda: loops.run(self._send(channel, message, payload)))

    async def _send(self, channel: str, message: Any, payload: bytes) -> str | None:
        event_id = await self.hubs.current().publish(channel, payload)
        if self.observers:
            event = Event(channel, message, event_id)
            for observer in self.observers:
                observer(event)
        return event_id

    # -- subscribing and history ----------------------------------------------

    def subscribe(self, *channels: str, since: Since = None, history: int = 0) -> Subscription:
        """Subscribe to ``channels``; use as ``async with ... as sub: async for event in sub``.

        ``since=ID`` (a mapping ``{channel: ID}`` for several channels) first
        replays every retained event after that id; ``history=N`` the last N of
        each channel. Then events arrive live, with no gap and no duplicate.
        """
        return Subscription(self.hubs, channels, since, history)

    async def ahistory(
        self,
        channel: str,
        *,
        since: str | None = None,
        limit: int | None = 100,
        oldest_first: bool = False,
    ) -> list[Event]:
        """Retained events of ``channel`` after ``since``, oldest first, at most ``limit``:
        the newest ones, or with ``oldest_first=True`` the oldest ones — a page, so that
        ``since=`` the last id returned reads the next page; fewer than ``limit`` means
        there are no more. Raises `HistoryNotSupported` on a backend without history,
        ``ValueError`` when ``since`` is no event id of this backend and `HistoryGap`
        when retention dropped events after it (or no event had that id yet)."""
        validate_channel_name(channel)
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a whole number >= 0 or None, not {limit!r}")
        return await loops.on_lasting_loop(self._history(channel, since, limit, oldest_first))

    async def _history(
        self, channel: str, since: str | None, limit: int | None, oldest_first: bool
    ) -> list[Event]:
        hub = self.hubs.current()
        if since is None:
            return await hub.history(channel, since, limit, oldest_first)
        hub.id_order(since)  # a ValueError before the engine sees it
        events = await hub.history(channel, since, limit, oldest_first)
        # Checked after the read: retention dropping events meanwhile is seen too.
        await hub.check_resumable({channel: since})
        return events

    def history(
        self,
        channel: str,
        *,
        since: str | None = None,
        limit: int | None = 100,
        oldest_first: bool = False,
    ) -> list[Event]:
        """Sync `ahistory`."""
        return loops.run(
            self.ahistory(channel, since=since, limit=limit, oldest_first=oldest_first)
        )

    # -- state ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters summed over every event loop using this alias: published, received,
        undecodable, forged, lagged, disconnects, reconnects, outage_seconds, and the current
        numbers of local subscribers and of channels subscribed at the backend."""
        return asdict(self.hubs.stats())

    async def aclose(self) -> None:
        """Close this alias's connections on every loop; open subscriptions end."""
        await self.hubs.aclose()

    def close(self) -> None:
        """Sync `aclose`."""
        self.hubs.close()
