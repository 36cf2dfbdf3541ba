"""Server-Sent Events: stream broadcast channels to browsers from an async view.

::

    from django_broadcaster.http import EventStreamResponse

    async def live(request, room):
        return EventStreamResponse(request, f"chat.{room}", event_key="type")

The response subscribes when the server starts sending it (on the server's
event loop, shared with every other request of the process), resumes from the
``Last-Event-ID`` header through history, sends keep-alive comments while the
channels are quiet, and unsubscribes when the client goes away.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing, suppress
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, StreamingHttpResponse

from .config import DEFAULT_ALIAS
from .events import Event, validate_channel_name
from .exceptions import BackendUnavailable, BroadcastError, SubscriberLagged
from .front import Broadcast
from .handler import broadcasts
from .subscription import Subscription

logger = logging.getLogger("django_broadcaster")

#: ``authorize(request, channel)``: whether ``request`` may read ``channel``.
Authorize = Callable[[HttpRequest, str], bool]

#: Replay "everything retained" for a channel that had no event when the client
#: first connected (events published since then must not be missed).
_ALL_RETAINED = 2**31 - 1
#: Events that may be published while a resume point is checked (see `_retained`).
_SLACK = 64
#: Most events written in one chunk when the subscriber's queue is backed up.
_BATCH = 100


class EventStreamResponse(StreamingHttpResponse):
    """A ``text/event-stream`` response streaming ``channels`` of one broadcast alias.

    Each event is sent as ``id:`` (the event id; for several channels a
    composite id holding every channel's position), an optional ``event:``
    (the message's ``event_key`` item, when it is a string) and ``data:`` (the
    message as JSON). A browser's ``EventSource`` sends the last id back in
    ``Last-Event-ID`` when it reconnects (other clients may pass it as the
    ``lastEventId`` query parameter); the stream then resumes right after it,
    with no gap and no duplicate. When it cannot — the backend keeps no
    history, the id is unknown or has fallen out of history, the client read too
    slowly — the client gets a ``reset`` event (``reset_event``) whose data is
    ``{"channels": [...], "reason": ...}``, and the stream continues live.

    ``authorize(request, channel)`` (or the `has_permission` method of a
    subclass) is asked for every channel while the response is built; a refusal
    raises `PermissionDenied`, which Django answers with 403.

    Only for async views under ASGI: under WSGI a streaming response that
    never ends ties up a worker thread.
    """

    #: Seconds of silence after which a ``: keep-alive`` comment is sent.
    keepalive: float = 15.0
    #: Name of the event that tells the client its position could not be resumed.
    reset_event: str = "reset"

    def __init__(
        self,
        request: HttpRequest,
        *channels: str,
        using: str = DEFAULT_ALIAS,
        event_key: str | None = None,
        keepalive: float | None = None,
        retry: int | None = None,
        authorize: Authorize | None = None,
        encoder: type[json.JSONEncoder] = DjangoJSONEncoder,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not channels:
            raise TypeError("EventStreamResponse needs at least one channel name")
        self.channels = tuple(dict.fromkeys(validate_channel_name(c) for c in channels))
        self.using = using
        self.broadcast: Broadcast = broadcasts[using]
        self.event_key = event_key
        if keepalive is not None:
            if keepalive <= 0:
                raise ValueError(f"keepalive must be a number of seconds > 0, not {keepalive!r}")
            self.keepalive = keepalive
        if retry is not None and (not isinstance(retry, int) or retry < 0):
            raise ValueError(f"retry must be a whole number of milliseconds, not {retry!r}")
        self.retry = retry
        self._authorize = authorize
        self._encoder = encoder
        for channel in self.channels:
            if not self.has_permission(request, channel):
                raise PermissionDenied(f"not allowed to read broadcast channel {channel!r}")
        if not isinstance(request, ASGIRequest):
            warnings.warn(
                "EventStreamResponse streams until the client leaves: serve it from an async "
                "view under ASGI, or it holds a WSGI worker for as long",
                RuntimeWarning,
                stacklevel=2,
            )
        self.last_event_id: str | None = (
            request.headers.get("Last-Event-ID") or request.GET.get("lastEventId") or None
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stream_gen: AsyncGenerator[bytes, None] = self._stream()
        super().__init__(self._stream_gen, content_type="text/event-stream", headers=headers)
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # nginx: pass each chunk on at once

    def has_permission(self, request: HttpRequest, channel: str) -> bool:
        """Whether ``request`` may read ``channel``; calls ``authorize`` if one was given.

        Runs in the view's thread — in an async view, the event loop — so it must
        not query the database: resolve what it needs first (``await request.auser()``).
        """
        return self._authorize is None or bool(self._authorize(request, channel))

    # -- ids -------------------------------------------------------------------

    def encode_id(self, positions: Mapping[str, str]) -> str:
        """The ``id:`` for ``positions`` (channel -> last event id, ``""`` for "before any").

        One channel: the event id itself. Several: ``channel=id&channel=id``.
        """
        if len(self.channels) == 1:
            (position,) = positions.values()
            if position and not set(position) & set("=&%\r\n"):
                return position
        return urlencode({c: positions[c] for c in self.channels}, safe=":")

    def decode_id(self, value: str) -> dict[str, str] | None:
        """Positions carried by a ``Last-Event-ID``; ``None`` when it is not ours."""
        if len(self.channels) == 1 and "=" not in value:
            return {self.channels[0]: value}
        try:
            pairs = parse_qsl(value, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return None
        return {channel: position for channel, position in pairs if channel in self.channels}

    # -- wire format -------------------------------------------------------------

    def event_name(self, event: Event) -> str | None:
        """The ``event:`` field of ``event``: its message's ``event_key`` item, if a name."""
        if self.event_key is None or not isinstance(event.message, dict):
            return None
        name = event.message.get(self.event_key)
        if isinstance(name, str) and name and not set(name) & set("\r\n"):
            return name
        return None

    def serialize(self, message: Any) -> str:
        """``message`` as one line of JSON."""
        return json.dumps(message, cls=self._encoder, separators=(",", ":"))

    def _format(self, event: Event, event_id: str | None) -> str:
        try:
            data = self.serialize(event.message)
        except (TypeError, ValueError):
            logger.exception(
                "EventStreamResponse could not encode an event of %r (id %s) as JSON; "
                "pass encoder= to handle its type",
                event.channel,
                event.id,
            )
            return ""
        name = self.event_name(event)
        head = f"id: {event_id}\n" if event_id is not None else ""
        if name is not None:
            head += f"event: {name}\n"
        return f"{head}data: {data}\n\n"

    def _reset(self, channels: list[str], reason: str) -> str:
        data = json.dumps({"channels": channels, "reason": reason}, separators=(",", ":"))
        return f"event: {self.reset_event}\ndata: {data}\n\n"

    # -- streaming ---------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[bytes]:
        # The server closes what it iterates when the client goes away; hand it
        # the stream itself (not Django's wrappers around it) so that closing it
        # releases the subscription at once. Middleware that replaced
        # streaming_content gets the usual behaviour.
        current: object = getattr(self, "_iterator", None)
        if current is self._stream_gen:
            return self._stream_gen
        return super().__aiter__()

    def close(self) -> None:
        # Django closes the response when the client has gone (also when the
        # server was blocked writing to it); end the stream now, not whenever
        # the garbage collector finds it, so its subscription is released.
        super().close()
        loop, stream = self._loop, self._stream_gen
        if loop is not None and not loop.is_closed():
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(_close_later, loop, stream)

    async def _stream(self) -> AsyncGenerator[bytes, None]:
        self._loop = asyncio.get_running_loop()
        try:
            async with aclosing(self._subscribed()) as chunks:
                async for chunk in chunks:
                    yield chunk
        except BackendUnavailable as exc:
            # The status line is sent already: end the stream, the client reconnects.
            logger.warning("EventStreamResponse of %s ended: %s", ", ".join(self.channels), exc)

    async def _subscribed(self) -> AsyncGenerator[bytes, None]:
        front = self.broadcast
        requested: dict[str, str] | None = None
        if self.last_event_id is not None:
            requested = self.decode_id(self.last_event_id) or {}
        lagged = False
        retry = f"retry: {self.retry}\n" if self.retry is not None else ""
        while True:
            if front.supports_history:
                positions, lost = await self._positions(requested)
                since = {c: p for c, p in positions.items() if p}
                everything = len(since) < len(positions)
                sub = front.subscribe(
                    *self.channels,
                    since=since or None,
                    history=_ALL_RETAINED if everything else 0,
                )
                reason = "lagged" if lagged else "unknown-id"
            else:
                positions = dict.fromkeys(self.channels, "")
                lost = list(self.channels) if requested is not None or lagged else []
                sub = front.subscribe(*self.channels)
                reason = "lagged" if lagged else "no-history"
            try:
                async with sub:
                    # First bytes once subscribed: the client's position, and what was lost.
                    resets = self._reset(lost, reason) if lost else ""
                    yield f"{resets}{retry}id: {self.encode_id(positions)}\n\n".encode()
                    retry = ""
                    async with aclosing(self._events(sub, positions)) as chunks:
                        async for chunk in chunks:
                            yield chunk.encode()
                return  # the broadcast was closed; the client reconnects
            except SubscriberLagged:
                # The client reads too slowly: pick up where it is, from history if any.
                requested, lagged = dict(positions), True

    async def _events(
        self, sub: Subscription, positions: dict[str, str]
    ) -> AsyncGenerator[str, None]:
        while True:
            if sub.pending:
                event = await sub.get()
            else:
                try:
                    event = await sub.get(self.keepalive)
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                except StopAsyncIteration:
                    return
            batch = [event]
            while sub.pending and len(batch) < _BATCH:
                batch.append(await sub.get())
            parts = []
            for event in batch:
                event_id = None
                if event.id is not None:
                    positions[event.channel] = event.id
                    event_id = self.encode_id(positions)
                parts.append(self._format(event, event_id))
            yield "".join(parts)

    async def _positions(
        self, requested: dict[str, str] | None
    ) -> tuple[dict[str, str], list[str]]:
        """Where each channel starts (``""``: before every retained event), and which
        channels could not resume from ``requested``."""
        positions: dict[str, str] = {}
        lost: list[str] = []
        for channel in self.channels:
            wanted = None if requested is None else requested.get(channel)
            if wanted == "" or (wanted and await self._retained(channel, wanted)):
                positions[channel] = wanted
                continue
            if requested is not None:
                lost.append(channel)
            newest = await self.broadcast.ahistory(channel, limit=1)
            positions[channel] = (newest[-1].id or "") if newest else ""
        return positions, lost

    async def _retained(self, channel: str, event_id: str) -> bool:
        """Whether ``event_id`` is still in ``channel``'s history, so every event after it
        is too (histories drop their oldest events first)."""
        try:
            after = await self.broadcast.ahistory(channel, since=event_id, limit=None)
        except BackendUnavailable:
            raise
        except (ValueError, BroadcastError):
            return False  # not an id of this backend
        # Events published between the two reads push it back; _SLACK of them are tolerated.
        newest = await self.broadcast.ahistory(channel, limit=len(after) + _SLACK)
        return any(event.id == event_id for event in newest)


def _close_later(loop: asyncio.AbstractEventLoop, stream: AsyncGenerator[bytes, None]) -> None:
    if getattr(stream, "ag_running", False) or getattr(stream, "ag_frame", 1) is None:
        return  # still at work (it ends by itself) or already finished
    loop.create_task(_aclose(stream))


async def _aclose(stream: AsyncGenerator[bytes, None]) -> None:
    with suppress(RuntimeError):
        await stream.aclose()
