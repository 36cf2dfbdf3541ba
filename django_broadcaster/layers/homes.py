"""`Homes`: which event loop of this process holds each process-specific channel.

A process-specific channel (``new_channel()``) belongs to its layer in this
process, whatever the event loop: its queue lives on one loop's `LoopLayer`
(its home), normally the one that made it. A call from another loop whose
home is running runs there; when the home is not running (a loop between
``run_until_complete`` calls, a closed one) the calling loop adopts the channel
and the messages waiting in it. Messages of a loop closed by ``close()`` are
parked here until a loop adopts their channel or they expire, so that
``close_pools()`` between a send and a receive loses nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from .inbox import Message
from .loop_state import LoopLayer


class Homes:
    """The homes of one layer's process-specific channels, over its event loops."""

    def __init__(self, states: Callable[[], Iterable[LoopLayer]]) -> None:
        self._states = states
        self._lock = threading.Lock()
        #: Messages of channels whose loop closed: ``(deadline, message)``, oldest first.
        self._parked: dict[str, list[tuple[float, Message]]] = {}

    def of(self, channel: str, state: LoopLayer) -> LoopLayer:
        """The live state holding ``channel``, or ``state`` after adopting it there."""
        if channel in state.inboxes:
            return state
        with self._lock:
            for other in self._states():
                if channel in other.inboxes and not other.closed and other.loop.is_running():
                    return other
            inbox = state.open_inbox(channel, own=True)
            now = time.monotonic()
            for other in self._states():
                old = other.inboxes.pop(channel, None) if other is not state else None
                if old is not None:  # its loop is not running: nothing touches it meanwhile
                    for item in old.queue or ():
                        inbox.put(item, now)
            for item in self._parked.pop(channel, ()):
                inbox.put(item, now)
        return state

    def park(self, channel: str, messages: Iterable[tuple[float, Message]]) -> None:
        """Keep ``channel``'s queued messages for the loop that adopts it next."""
        now = time.monotonic()
        with self._lock:
            for name in [n for n, kept in self._parked.items() if kept[-1][0] <= now]:
                del self._parked[name]  # every message of it expired
            kept = [item for item in messages if item[0] > now]
            if kept:
                self._parked.setdefault(channel, []).extend(kept)

    @property
    def parked(self) -> int:
        """Messages parked (for ``status()``)."""
        return sum(len(kept) for kept in list(self._parked.values()))
