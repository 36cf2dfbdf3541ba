"""`Expiring`: the layer's messages do not outlive its ``expiry`` in the engine.

A group message or a message to another process's channels is published on
the bus; on a backend that retains events (Redis Streams) it would stay there
for the backend's retention, long after every receiver has given up on it.
After publishing on a channel the layer asks the backend (``expire``) to drop
what the channel retains ``expiry`` seconds later: once per channel per
`DELAY`, after the last publish of that window (a publish may reset the
engine's time to live to the backend's own retention). A closed layer drops
its own process channel at once. Backends without retention of their own do
nothing here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from ..backends.base import BaseBackend
from ..front import Broadcast

logger = logging.getLogger("django_broadcaster.layers")

#: Seconds between two ``expire`` calls for one channel (and after its last publish).
DELAY = 1.0


class Expiring:
    """The pending ``expire`` calls of one `LoopLayer`."""

    def __init__(
        self,
        front: Broadcast,
        expiry: float,
        loop: asyncio.AbstractEventLoop,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self.front = front
        self.expiry = expiry
        self.loop = loop
        self.spawn = spawn
        #: Only backends overriding ``expire`` retain anything to expire.
        self.enabled = front.config.backend_class.expire is not BaseBackend.expire
        self.pending: dict[str, asyncio.TimerHandle] = {}

    def published(self, channel: str) -> None:
        """``channel`` was just published on: expire it `DELAY` seconds from now."""
        if self.enabled and channel not in self.pending:
            self.pending[channel] = self.loop.call_later(DELAY, self._fire, channel)

    def _fire(self, channel: str) -> None:
        del self.pending[channel]
        self.spawn(self.expire(channel, self.expiry))

    async def expire(self, channel: str, seconds: float) -> None:
        """Ask the backend to drop ``channel``'s events ``seconds`` from now."""
        hub = self.front.hubs.current()
        try:
            await hub.call("expire on", partial(hub.backend.expire, channel, seconds))
        except Exception as exc:  # the next publish tries again
            logger.debug("could not expire %r on %r: %s", channel, self.front.alias, exc)

    async def close(self, own: str | None) -> None:
        """Expire what is pending now, and drop ``own`` (the closing layer's channel)."""
        pending, self.pending = self.pending, {}
        if not self.enabled:
            return
        for channel, timer in pending.items():
            timer.cancel()
            await self.expire(channel, self.expiry)
        if own is not None:
            await self.expire(own, 0)
