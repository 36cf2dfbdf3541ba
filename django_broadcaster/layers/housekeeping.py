"""`sweep`: a `LoopLayer`'s housekeeping, run by its timer (`LoopLayer.arm`).

It drops expired messages and group memberships, and releases the channels
that went idle: a channel without a receive() in progress for ``expiry``
seconds is forgotten (with its memberships) when its last receive() was
cancelled, when a message expired unread in it, or when it holds nothing; a
normal channel that still has memberships stops being received here. The sweep
looks at every channel but skips those with a receive() in progress at once:
receive() itself keeps no list of idle channels up to date.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from .inbox import Inbox


class Limits(Protocol):
    """The layer's expiries, as `sweep` reads them."""

    @property
    def expiry(self) -> float: ...
    @property
    def group_expiry(self) -> float: ...


class Swept(Protocol):
    """What `sweep` reads and changes of a `LoopLayer`."""

    timer: asyncio.TimerHandle | None
    closed: bool
    expired: int
    next_group_scan: float
    inboxes: dict[str, Inbox]
    groups: dict[str, dict[Inbox, float]]

    @property
    def limits(self) -> Limits: ...
    def forget(self, inbox: Inbox) -> None: ...
    def unclaim(self, inbox: Inbox) -> None: ...
    def unsubscribe_soon(self, topic: str) -> None: ...
    def arm(self) -> None: ...


def sweep(state: Swept) -> None:
    """Expire messages and memberships; release channels that went idle."""
    state.timer = None
    if state.closed:
        return
    now = time.monotonic()
    expiry = state.limits.expiry
    for inbox in list(state.inboxes.values()):
        if inbox.receivers:
            continue
        dropped = inbox.purge(now)
        state.expired += dropped
        if now - inbox.last_active < expiry:
            continue
        # A message expiring unread: nothing received here for `expiry` while work
        # waited (a consumer that died mid-message never had a receive cancelled).
        if inbox.abandoned or dropped or not (inbox.groups or inbox.queue):
            state.forget(inbox)
        elif inbox.claimed:
            state.unclaim(inbox)
    if now >= state.next_group_scan:
        group_expiry = state.limits.group_expiry
        state.next_group_scan = now + min(max(group_expiry / 4, 0.01), 60.0)
        for group, members in list(state.groups.items()):
            for inbox, joined in list(members.items()):
                if now - joined >= group_expiry:
                    del members[inbox]
                    inbox.leave(group)
            if not members:
                del state.groups[group]
                state.unsubscribe_soon(group)
    if state.inboxes:
        state.arm()
