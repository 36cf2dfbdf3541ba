"""`Inbox`: one channel's queue on one event loop, bounded, with per-message expiry."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

#: A channel layer message.
Message = dict[str, Any]
#: A queued message: ``(deadline, message)``. One item is shared by every member
#: of a group (the message is copied when received).
Item = tuple[float, Message]


class Inbox:
    """One channel's queue on one event loop: FIFO, bounded, with per-message expiry.

    Touched only from its loop; `LoopLayer` decides what goes in and comes out.
    An idle channel is small: no deque until its first message (an empty one
    costs 760 bytes) and its groups in a tuple (an empty set costs 216).
    """

    __slots__ = (
        "abandoned",
        "capacity",
        "claimed",
        "groups",
        "last_active",
        "name",
        "own",
        "queue",
        "receivers",
        "waiters",
    )

    def __init__(self, name: str, capacity: int, now: float, own: bool) -> None:
        self.name = name
        self.capacity = capacity
        #: The queued items, oldest first; ``None`` until the first one.
        self.queue: deque[Item] | None = None
        #: Pending receive()s, longest-waiting first. Each is resolved with the item
        #: handed to it, or with ``None``: look in the queue. (A list, not a deque:
        #: rarely more than one.)
        self.waiters: list[asyncio.Future[Item | None]] = []
        #: receive() calls in progress: waiting, or woken and not yet returned.
        self.receivers = 0
        #: The groups it is in, each once.
        self.groups: tuple[str, ...] = ()
        #: A process-specific channel of this loop (made by its new_channel()).
        self.own = own
        #: A normal channel received on here: it has a `Feed` from its work queue.
        self.claimed = False
        #: Its last receive() was cancelled (the consumer probably went away).
        self.abandoned = False
        #: When its last receive() returned (or it was made).
        self.last_active = now

    @property
    def messages(self) -> deque[Item]:
        """The queued items, oldest first (the deque is made on first use)."""
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        return queue

    @property
    def queued(self) -> int:
        """How many messages are queued (some may have expired)."""
        return len(self.queue or ())

    def join(self, group: str) -> None:
        """Record membership of ``group``."""
        if group not in self.groups:
            self.groups += (group,)

    def leave(self, group: str) -> None:
        """Forget membership of ``group``."""
        if group in self.groups:
            self.groups = tuple(g for g in self.groups if g != group)

    def purge(self, now: float) -> int:
        """Drop the messages whose deadline has passed; how many were dropped."""
        dropped = 0
        queue = self.queue
        while queue and queue[0][0] <= now:
            queue.popleft()
            dropped += 1
        return dropped

    def put(self, item: Item, now: float) -> bool:
        """Queue ``item``, or hand it to the longest-waiting ``receive()`` when nothing
        is queued; ``False`` if the queue is full (nothing queued)."""
        queue = self.queue
        if not queue:
            waiters = self.waiters
            while waiters:
                waiter = waiters.pop(0)
                if not waiter.done():
                    waiter.set_result(item)
                    return True
            if queue is None:
                queue = self.queue = deque()
        elif len(queue) >= self.capacity:
            self.purge(now)
            if len(queue) >= self.capacity:
                return False
        queue.append(item)
        if self.waiters:
            self.wake()
        return True

    def hand_back(self, item: Item) -> None:
        """Return ``item``, handed to a ``receive()`` that was cancelled before taking
        it, to the head of the queue; the next waiting ``receive()`` gets it."""
        self.messages.appendleft(item)
        self.wake()

    def wake(self) -> None:
        """Wake the longest-waiting pending ``receive()``, if any, to look in the queue."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return
