"""`Sink`: the layer's subscription to one broadcast channel on one event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress

from ..events import Event
from ..hub import Hub
from ..hubs import Hubs

logger = logging.getLogger("django_broadcaster.layers")

#: What a sink hands each event to: ``handler(topic, event)``, called by the hub's reader.
Handler = Callable[[str, Event], None]


class Sink:
    """A hub `Subscriber` that hands each event to the layer as it is dispatched,
    instead of queueing it: the layer fans out into its own bounded queues.

    ``on_ended(sink)`` is called when the hub closes under it.
    """

    __slots__ = ("channels", "handler", "hub", "hubs", "on_ended", "ready", "topic")

    def __init__(
        self, hubs: Hubs, topic: str, handler: Handler, on_ended: Callable[[Sink], None]
    ) -> None:
        self.hubs = hubs
        self.topic = topic
        self.channels = (topic,)
        self.handler = handler
        self.on_ended = on_ended
        self.hub: Hub | None = None
        #: The task running `open`, once started.
        self.ready: asyncio.Task[None] | None = None

    @property
    def confirmed(self) -> bool:
        """Whether the backend confirmed the subscription."""
        ready = self.ready
        return ready is not None and ready.done() and not ready.cancelled()

    async def open(self) -> None:
        """Subscribe through this loop's hub; returns once the backend confirmed."""
        hub = self.hubs.current()
        self.hub = hub
        await hub.attach(self, self.channels)

    def deliver(self, event: Event) -> bool:
        """Hand ``event`` to the handler; never full (the layer's queues are)."""
        try:
            self.handler(self.topic, event)
        except Exception:
            logger.exception("channel layer failed to deliver an event of %r", self.topic)
        return True

    def hub_closed(self) -> None:
        """The hub closed (``Broadcast.aclose()``, say): tell the layer."""
        self.hub = None
        self.on_ended(self)

    async def close(self) -> None:
        """Stop subscribing (or trying to)."""
        ready = self.ready
        if ready is not None and not ready.done():
            ready.cancel()
        if ready is not None:
            with suppress(Exception, asyncio.CancelledError):
                await ready
        hub, self.hub = self.hub, None
        if hub is not None:
            await hub.release(self)
