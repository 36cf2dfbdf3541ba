"""Where an event stream starts: the client's position checked against the retained
history, and the retained events after it, read page by page.

Whatever the client sends, the cost is bounded: whether a position can be resumed
is the core's bounded check (`HistoryGap`, ``ValueError``), never a read of the
whole history; the events after it are read and sent one page at a time (`pages`),
so a response holds at most one page of them however far behind its client is.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
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
    #: The channels whose retained events after their position are sent first.
    resumed: list[str] = field(default_factory=list)
    #: Per reason, the channels whose requested position could not be resumed.
    lost: dict[str, list[str]] = field(default_factory=dict)

    def lose(self, channel: str, reason: str) -> None:
        """Record that ``channel`` could not be resumed, for ``reason``."""
        self.lost.setdefault(reason, []).append(channel)


async def plan(
    broadcast: Broadcast,
    channels: tuple[str, ...],
    requested: Mapping[str, str] | None,
    *,
    lagged: bool,
) -> Start:
    """The `Start` of a stream of ``channels`` on a backend with history.

    ``requested`` holds the positions the client asked for (``None``: a new client,
    which starts at the newest event); a channel missing from it is lost. ``lagged``:
    the stream is resuming after it fell behind, so every loss is reported as
    ``lagged``.
    """
    start = Start()
    for channel in channels:
        wanted = None if requested is None else requested.get(channel)
        if wanted is not None and await _resumable(broadcast, channel, wanted):
            start.positions[channel] = wanted
            start.resumed.append(channel)
            continue
        if requested is not None:
            start.lose(channel, LAGGED if lagged else UNKNOWN_ID)
        newest = await broadcast.ahistory(channel, limit=1)
        start.positions[channel] = (newest[-1].id or "") if newest else ""
    return start


async def _resumable(broadcast: Broadcast, channel: str, position: str) -> bool:
    """Whether the stream can resume ``channel`` after ``position`` (``""``: from the
    oldest retained event): an id of this backend, with nothing dropped after it and
    not after every id issued."""
    if not position:
        return True
    try:
        await broadcast.hubs.current().check_resumable({channel: position})
    except BackendUnavailable:
        raise
    except (ValueError, HistoryGap):
        return False
    except Exception as exc:  # an engine refusing the position must not end the stream
        logger.warning(
            "EventStreamResponse could not resume %r from the client's position (%s); "
            "sent a reset instead",
            channel,
            type(exc).__name__,
        )
        return False
    return True


async def pages(
    broadcast: Broadcast, channel: str, position: str, size: int
) -> AsyncGenerator[list[Event], None]:
    """The retained events of ``channel`` after ``position`` (``""``: all of them),
    oldest first, in pages of at most ``size`` (>= 1) events; `HistoryGap` when
    retention drops some of them before they are read."""
    while True:
        page = await broadcast.ahistory(
            channel, since=position or None, limit=size, oldest_first=True
        )
        if page:
            yield page
            position = page[-1].id or position
        if len(page) < size:
            return
