"""`Hubs`: the hubs of one alias, one per event loop that uses it.

Every request served by a process's loop shares that loop's hub (one upstream
subscription per channel); sync callers share the bridge loop's hub.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import fields

from . import loops
from .hub import Hub
from .hub_settings import HubSettings, HubStats


class Hubs:
    """One `Hub` per event loop for the alias described by ``settings``."""

    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self._hubs: loops.PerLoop[Hub] = loops.PerLoop(self._make)

    def _make(self, loop: asyncio.AbstractEventLoop) -> Hub:
        return Hub(self.settings, loop, on_close=self._closed)

    def _closed(self, hub: Hub) -> None:
        self._hubs.discard(hub.loop, hub)

    def __len__(self) -> int:
        """How many event loops have a hub."""
        return len(self._hubs.values())

    def current(self) -> Hub:
        """The running loop's hub (made on first use)."""
        return self._hubs.get()

    def stats(self) -> HubStats:
        """Counters summed over every loop's hub."""
        total = HubStats()
        for hub in self._hubs.values():
            counters = hub.stats()
            for field in fields(HubStats):
                setattr(
                    total, field.name, getattr(total, field.name) + getattr(counters, field.name)
                )
        return total

    async def aclose(self) -> None:
        """Close every loop's hub, waiting for each."""
        current = asyncio.get_running_loop()
        for loop, hub in self._hubs.items():
            if loop is current:
                await hub.close()
            elif loop.is_running():
                with suppress(Exception):
                    await loops.run_on(loop, hub.close())
            else:
                self._closed(hub)

    def close(self) -> None:
        """From sync code: close every loop's hub as well as can be done from here
        (see `loops.finish_on`); hubs of stopped loops are just forgotten."""
        for loop, hub in self._hubs.items():
            if loop.is_running():
                loops.finish_on(loop, hub.close(), self.settings.timeout)
            else:
                self._closed(hub)
