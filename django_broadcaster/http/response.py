"""`EventStreamResponse`: a ``text/event-stream`` response streaming broadcast channels."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping
from contextlib import aclosing
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, StreamingHttpResponse

from ..config import DEFAULT_ALIAS
from ..events import Event, validate_channel_name
from ..exceptions import BackendUnavailable, HistoryGap, SubscriberLagged
from ..front import Broadcast
from ..handler import broadcasts
from ..options import is_seconds, is_whole_number
from ..subscription import Subscription
from . import resume
from .closing import StreamCloser

logger = logging.getLogger("django_broadcaster")

#: ``authorize(request, channel)``: whether ``request`` may read ``channel``.
Authorize = Callable[[HttpRequest, str], bool]

#: Most events, and about the most bytes, written in one chunk.
_BATCH = 100
_CHUNK_BYTES = 64 * 1024


class EventStreamResponse(StreamingHttpResponse):
    """A ``text/event-stream`` response streaming ``channels`` of one broadcast alias.

    Each event is sent as ``id:`` (the event id; for several channels a
    composite id holding every channel's position), an optional ``event:``
    (the message's ``event_key`` item, when it is a string) and ``data:`` (the
    message as JSON). A browser's ``EventSource`` sends the last id back in
    ``Last-Event-ID`` when it reconnects (other clients may pass it as the
    ``lastEventId`` query parameter); the stream then resumes right after it,
    with no gap and no duplicate. When it cannot — the backend keeps no
    history, the id is unknown or has fallen out of history, retention drops
    events while they are replayed — the client gets a ``reset`` event
    (``reset_event``) whose data is ``{"channels": [...], "reason": ...}``, and
    the stream continues live. However far behind the client is, every retained
    event after its position is replayed, read ``replay_page`` events at a time.

    ``authorize(request, channel)`` (or the `has_permission` method of a
    subclass) is asked for every channel while the response is built; a refusal
    raises `PermissionDenied`, which Django answers with 403. With
    ``reauthorize_every`` it is asked again (`ahas_permission`) while streaming,
    and the stream ends at the first refusal.

    After ``byte_budget`` bytes the stream ends (a ``reset`` with reason
    ``budget`` says so): the client reconnects and resumes, and a client that
    stopped reading never makes the server buffer more than that.

    Only for async views under ASGI: under WSGI a streaming response that
    never ends ties up a worker thread.
    """

    #: Seconds of silence after which a ``: keep-alive`` comment is sent.
    keepalive: float = 15.0
    #: Name of the event that tells the client its position could not be resumed.
    reset_event: str = "reset"
    #: Retained events read at a time to replay what a reconnecting client missed:
    #: the most replayed events a response holds.
    replay_page: int = 100
    #: Bytes after which the stream ends so that the client reconnects; ``None``: never.
    byte_budget: int | None = 4 * 1024 * 1024
    #: Seconds between permission checks while streaming; ``None``: only at the start.
    reauthorize_every: float | None = None

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
        replay_page: int | None = None,
        byte_budget: int | None = None,
        reauthorize_every: float | None = None,
    ) -> None:
        if not channels:
            raise TypeError("EventStreamResponse needs at least one channel name")
        self.channels = tuple(dict.fromkeys(validate_channel_name(c) for c in channels))
        self.using = using
        self.broadcast: Broadcast = broadcasts[using]
        self.event_key = event_key
        if keepalive is not None:
            if not is_seconds(keepalive):
                raise ValueError(f"keepalive must be a number of seconds > 0, not {keepalive!r}")
            self.keepalive = keepalive
        if retry is not None and not is_whole_number(retry, 0):
            raise ValueError(f"retry must be a whole number of milliseconds, not {retry!r}")
        self.retry = retry
        if replay_page is not None:
            if not is_whole_number(replay_page, 1):
                raise ValueError(f"replay_page must be a whole number >= 1, not {replay_page!r}")
            self.replay_page = replay_page
        if byte_budget is not None:
            if not is_whole_number(byte_budget, 1):
                raise ValueError(
                    f"byte_budget must be a whole number of bytes >= 1, not {byte_budget!r}"
                )
            self.byte_budget = byte_budget
        if reauthorize_every is not None:
            if not is_seconds(reauthorize_every):
                raise ValueError(
                    f"reauthorize_every must be a number of seconds > 0, not {reauthorize_every!r}"
                )
            self.reauthorize_every = reauthorize_every
        self._authorize = authorize
        self._encoder = encoder
        self._request = request
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
        self._stream_gen: AsyncGenerator[bytes, None] = self._stream()
        self._closer = StreamCloser(self._stream_gen)
        super().__init__(self._stream_gen, content_type="text/event-stream", headers=headers)
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # nginx: pass each chunk on at once

    def has_permission(self, request: HttpRequest, channel: str) -> bool:
        """Whether ``request`` may read ``channel``; calls ``authorize`` if one was given.

        Runs in the view's thread — in an async view, the event loop — so it must
        not query the database: resolve what it needs first (``await request.auser()``).
        """
        return self._authorize is None or bool(self._authorize(request, channel))

    async def ahas_permission(self, request: HttpRequest, channel: str) -> bool:
        """The check repeated every ``reauthorize_every`` seconds while streaming.

        Runs on the event loop. The default calls `has_permission`, so it sees only
        what that hook sees; override it to look again at what can change (a
        session, a membership: ``await Membership.objects.filter(...).aexists()``).
        """
        return self.has_permission(request, channel)

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

    def _format(self, event: Event, positions: dict[str, str]) -> str:
        """``event`` as a block, moving ``positions`` past it (``""`` if unencodable)."""
        event_id = None
        if event.id is not None:
            positions[event.channel] = event.id
            event_id = self.encode_id(positions)
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

    def _chunks(self, events: Iterable[Event], positions: dict[str, str]) -> Iterable[str]:
        """``events`` formatted, in chunks of at most ``_BATCH`` events and about
        ``_CHUNK_BYTES``."""
        parts: list[str] = []
        size = 0
        for event in events:
            part = self._format(event, positions)
            parts.append(part)
            size += len(part)
            if len(parts) >= _BATCH or size >= _CHUNK_BYTES:
                yield "".join(parts)
                parts, size = [], 0
        if parts:
            yield "".join(parts)

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
        self._closer.close()

    async def _stream(self) -> AsyncGenerator[bytes, None]:
        closer = self._closer
        closer.started()
        budget, sent = self.byte_budget, 0
        try:
            async with aclosing(self._subscribed()) as chunks:
                async for chunk in chunks:
                    yield chunk
                    closer.resumed()
                    sent += len(chunk)
                    if budget is not None and sent >= budget:
                        # Nothing lost: the client reconnects and resumes from its id.
                        yield self._reset([], "budget").encode()
                        return
        except BackendUnavailable as exc:
            # The status line is sent already: end the stream, the client reconnects.
            logger.warning("EventStreamResponse of %s ended: %s", ", ".join(self.channels), exc)

    async def _start(self, requested: dict[str, str] | None, lagged: bool) -> resume.Start:
        if self.broadcast.supports_history:
            return await resume.plan(self.broadcast, self.channels, requested, lagged=lagged)
        start = resume.Start(positions=dict.fromkeys(self.channels, ""))
        if requested is not None or lagged:
            for channel in self.channels:
                start.lose(channel, resume.LAGGED if lagged else resume.NO_HISTORY)
        return start

    async def _subscribed(self) -> AsyncGenerator[bytes, None]:
        front = self.broadcast
        requested: dict[str, str] | None = None
        if self.last_event_id is not None:
            requested = self.decode_id(self.last_event_id) or {}
        lagged = False
        retry = f"retry: {self.retry}\n" if self.retry is not None else ""
        while True:
            start = await self._start(requested, lagged)
            positions = dict(start.positions)
            resets = "".join(self._reset(c, r) for r, c in start.lost.items())
            try:
                if resets and start.resumed:
                    yield resets.encode()  # before a replay, which byte_budget may cut short
                    resets = ""
                # What the client missed, a page at a time, before subscribing: the
                # subscription's own replay then covers what came meanwhile.
                for channel in start.resumed:
                    pages = resume.pages(front, channel, positions[channel], self.replay_page)
                    async with aclosing(pages):
                        async for page in pages:
                            for chunk in self._chunks(page, positions):
                                yield chunk.encode()
                since = {channel: position for channel, position in positions.items() if position}
                # A channel with no event yet replays what is published meanwhile.
                from_oldest = front.supports_history and len(since) < len(self.channels)
                sub = front.subscribe(
                    *self.channels,
                    since=since or None,
                    history=self.replay_page if from_oldest else 0,
                )
                async with sub:
                    # Once subscribed: the client's position, and what was lost.
                    yield f"{resets}{retry}id: {self.encode_id(positions)}\n\n".encode()
                    retry = ""
                    async with aclosing(self._events(sub, positions)) as chunks:
                        async for text in chunks:
                            yield text.encode()
                return  # the broadcast was closed, or access was revoked
            except (SubscriberLagged, HistoryGap):
                # The client reads too slowly, or retention dropped events before they
                # were replayed: pick up where it is, from history if any.
                requested, lagged = positions, True

    async def _events(
        self, sub: Subscription, positions: dict[str, str]
    ) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        every = self.reauthorize_every or math.inf
        next_check = loop.time() + every
        written = loop.time()
        while True:
            if loop.time() >= next_check:
                refused = [
                    c for c in self.channels if not await self.ahas_permission(self._request, c)
                ]
                if refused:
                    yield self._reset(refused, "forbidden")
                    return
                next_check = loop.time() + every
            if sub.pending:
                event = await sub.get()
            else:
                quiet_until = written + self.keepalive
                try:
                    event = await sub.get(max(min(quiet_until, next_check) - loop.time(), 0))
                except asyncio.TimeoutError:
                    if next_check < quiet_until:
                        next_check = loop.time()  # a check is due
                    else:
                        yield ": keep-alive\n\n"
                        written = loop.time()
                    continue
                except StopAsyncIteration:
                    return
            parts = [self._format(event, positions)]
            size = len(parts[0])
            while sub.pending and len(parts) < _BATCH and size < _CHUNK_BYTES:
                parts.append(self._format(await sub.get(), positions))
                size += len(parts[-1])
            yield "".join(parts)
            written = loop.time()
