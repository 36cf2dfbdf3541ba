"""Where an event stream starts: the client's position checked against the retained
history, and the retained events to send before the live ones.

Whatever the client sends, the cost is bounded: per channel one history read of at
most ``max_replay + 1`` events and one of a single event. Whether a position can be
resumed is the core's bounded check (`HistoryGap`, ``ValueError``), never a read of
the whole history.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..events import Event
from ..exceptions import BackendUnavailable, HistoryGap
from ..front import Broadcast

logger = logging.getLogger("django_broadcaster")

#: Reasons a ``reset`` event gives (see docs/sse.rst).
NO_HISTORY = "no-history"
UNKNOWN_ID = "unknown-id"
LAGGED = "lagged"


@dataclass
class Start:
    """Where a stream (re)starts."""

    #: Per channel, the position the client is at: the id of the last event it has,
    #: ``""`` for "before every retained event".
    positions: dict[str, str] = field(default_factory=dict)
    #: Retained events to send first (at most ``max_replay`` per channel).
    replay: list[Event] = field(default_factory=list)
    #: Per reason, the channels whose requested position could not be resumed.
    lost: dict[str, list[str]] = field(default_factory=dict)

    def since(self) -> dict[str, str]:
        """The ``since=`` that subscribes right after ``replay``."""
        last = dict(self.positions)
        for event in self.replay:
            if event.id is not None:
                last[event.channel] = event.id
        return {channel: position for channel, position in last.items() if position}

    def lose(self, channel: str, reason: str) -> None:
        """Record that ``channel`` could not be resumed, for ``reason``."""
        self.lost.setdefault(reason, []).append(channel)


async def plan(
    broadcast: Broadcast,
    channels: tuple[str, ...],
    requested: Mapping[str, str] | None,
    *,
    max_replay: int,
    lagged: bool,
) -> Start:
    """The `Start` of a stream of ``channels`` on a backend with history.

    ``requested`` holds the positions the client asked for (``None``: a new client,
    which starts at the newest event); a channel missing from it is lost. ``lagged``:
    the stream is resuming after its subscriber overflowed, so every loss is reported
    as ``lagged``.
    """
    start = Start()
    for channel in channels:
        wanted = None if requested is None else requested.get(channel)
        events: list[Event] = []
        reason = UNKNOWN_ID
        if wanted is not None:
            events, problem = await _after(broadcast, channel, wanted, max_replay)
            if problem is None:
                start.positions[channel] = wanted
                start.replay.extend(events)
                continue
            reason = problem
        if requested is not None:
            start.lose(channel, LAGGED if lagged else reason)
        if not events:
            events = await broadcast.ahistory(channel, limit=1)
        start.positions[channel] = (events[-1].id or "") if events else ""
    return start


async def _after(
    broadcast: Broadcast, channel: str, position: str, max_replay: int
) -> tuple[list[Event], str | None]:
    """The retained events of ``channel`` after ``position`` (``""``: all of them) and
    ``None``; or, when the stream cannot resume there, the reason and the newest
    event if it was read."""
    try:
        events = await broadcast.ahistory(channel, since=position or None, limit=max_replay + 1)
        if position and not events:
            newest = await broadcast.ahistory(channel, limit=1)
            order = broadcast.hubs.current().id_order
            if newest and newest[-1].id is not None and order(newest[-1].id) < order(position):
                return newest, UNKNOWN_ID  # after every event: not an id this stream gave
    except BackendUnavailable:
        raise
    except (ValueError, HistoryGap):
        return [], UNKNOWN_ID
    except Exception as exc:  # an engine refusing the position must not end the stream
        logger.warning(
            "EventStreamResponse could not resume %r from the client's position (%s); "
            "sent a reset instead",
            channel,
            type(exc).__name__,
        )
        return [], UNKNOWN_ID
    if len(events) > max_replay:
        return events[-1:], LAGGED  # more waiting than one response replays
    return events, None
