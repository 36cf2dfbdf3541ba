"""`Inbox`: one channel's queue on one event loop, bounded, with per-message expiry."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

#: A channel layer message.
Message = dict[str, Any]


class Inbox:
    """One channel's queue on one event loop: FIFO, bounded, with per-message expiry.

    Touched only from its loop; `LoopLayer` decides what goes in and comes out.
    """

    __slots__ = (
        "abandoned",
        "capacity",
        "claimed",
        "groups",
        "last_active",
        "messages",
        "name",
        "own",
        "waiters",
    )

    def __init__(self, name: str, capacity: int, now: float, own: bool) -> None:
        self.name = name
        self.capacity = capacity
        #: ``(deadline, message)`` pairs, oldest first.
        self.messages: deque[tuple[float, Message]] = deque()
        # A list, not a deque: rarely more than one waiter, and an empty deque
        # costs 600 bytes per channel.
        self.waiters: list[asyncio.Future[None]] = []
        self.groups: set[str] = set()
        #: A process-specific channel of this loop (made by its new_channel()).
        self.own = own
        #: A normal channel received on here: it has a `Feed` from its work queue.
        self.claimed = False
        #: Its last receive() was cancelled (the consumer probably went away).
        self.abandoned = False
        self.last_active = now

    def purge(self, now: float) -> int:
        """Drop the messages whose deadline has passed; how many were dropped."""
        dropped = 0
        messages = self.messages
        while messages and messages[0][0] <= now:
            messages.popleft()
            dropped += 1
        return dropped

    def put(self, message: Message, deadline: float, now: float) -> bool:
        """Queue ``message``; ``False`` if the queue is full (nothing queued)."""
        if len(self.messages) >= self.capacity:
            self.purge(now)
            if len(self.messages) >= self.capacity:
                return False
        self.messages.append((deadline, message))
        self.wake()
        return True

    def wake(self) -> None:
        """Wake the longest-waiting pending ``receive()``, if any."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return
