"""Noticing a dead link on a connection that only listens.

A subscriber's connection may stay silent for hours, so a link that died
without a FIN or RST (a partition, a NAT or load balancer that forgot the
connection, a server that restarted behind it) looks just like a quiet one,
and TCP keepalive does not help when a middlebox answers it. So the backends
probe: after ``OPTIONS["LIVENESS_INTERVAL"]`` seconds without a reply on the
listening connection they send a cheap request (Redis ``PING``, PostgreSQL
``SELECT 1``) and take the connection for dead when that gets no reply within
another interval. The hub then reconnects and resumes as after any connection
error, so a dead link is noticed within twice the interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from typing import Any

from ..options import is_seconds, option_error

#: Default ``OPTIONS["LIVENESS_INTERVAL"]`` (seconds): a dead link is noticed within twice this.
LIVENESS_INTERVAL = 5.0


def check_liveness_interval(options: Mapping[str, Any]) -> None:
    """Raise `ConfigError` unless ``OPTIONS["LIVENESS_INTERVAL"]`` is seconds > 0 or ``None``."""
    value = options.get("LIVENESS_INTERVAL", LIVENESS_INTERVAL)
    if value is not None and not is_seconds(value):
        raise option_error(
            "LIVENESS_INTERVAL",
            "a number of seconds > 0, or None (never probe)",
            value,
            hint=f"a dead link is noticed within twice this; the default is {LIVENESS_INTERVAL:g}",
        )


class Watchdog:
    """Probes a listening connection that went ``interval`` seconds without a reply.

    The reader calls `heard` for every reply it reads (probe replies included).
    After ``interval`` seconds without one, ``probe()`` sends a request; when
    another ``interval`` passes still without a reply, or the probe fails,
    ``dead(reason)`` is awaited and the watchdog stops. ``interval=None``: never.
    """

    def __init__(
        self,
        interval: float | None,
        probe: Callable[[], Awaitable[None]],
        dead: Callable[[str], Awaitable[None]],
    ) -> None:
        self.interval = interval
        self._probe = probe
        self._dead = dead
        self._heard_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def heard(self) -> None:
        """One reply was read."""
        self._heard_at = time.monotonic()

    def start(self) -> None:
        if self.interval is not None and self._task is None:
            self._task = asyncio.ensure_future(self._watch(self.interval))

    def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _watch(self, interval: float) -> None:
        while True:
            silent_for = time.monotonic() - self._heard_at
            if silent_for < interval:
                await asyncio.sleep(interval - silent_for)
                continue
            probed_at = time.monotonic()
            try:
                await asyncio.wait_for(self._probe(), interval)
            except Exception as exc:
                reason = f"liveness probe failed ({type(exc).__name__}: {exc})"
                break
            await asyncio.sleep(interval - (time.monotonic() - probed_at))
            if self._heard_at < probed_at:
                reason = f"no reply to a liveness probe within {interval:g}s"
                break
        self._task = None
        with suppress(Exception):
            await self._dead(reason)
