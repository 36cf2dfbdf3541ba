"""``broadcast status``: reach every alias and time a publish to its own subscription."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

from ..front import Broadcast
from ..handler import broadcasts
from ..masking import redact

#: The channel ``status`` publishes its probe on (history backends retain a few probes).
PROBE_CHANNEL = "django_broadcaster.status"


@dataclass
class StatusRow:
    """One alias's line of the status table; ``error`` is ``None`` when it is fine."""

    alias: str
    backend: str
    location: str
    history: str
    error: str | None = None
    round_trip: float | None = None


async def probe_all(aliases: list[str]) -> list[StatusRow]:
    """Probe ``aliases`` at the same time; one row each, in order."""
    return list(await asyncio.gather(*(_probe(alias) for alias in aliases)))


async def _probe(alias: str) -> StatusRow:
    """Reach ``alias``: subscribe to the probe channel, publish, time the round trip."""
    try:
        front = broadcasts[alias]
    except ImproperlyConfigured as exc:
        message = getattr(exc, "message", str(exc))
        return StatusRow(alias, "-", "-", "-", error=f"misconfigured: {message}")
    row = StatusRow(
        alias,
        front.config.backend_class.__name__,
        front.safe_location,
        "yes" if front.supports_history else "no",
    )
    try:
        row.round_trip = await _round_trip(front)
    except Exception as exc:  # any failure is this alias's status, not a crash
        if isinstance(exc, asyncio.TimeoutError):
            text = f"no probe received within {front.timeout}s"
        else:
            text = str(exc) or type(exc).__name__
        row.error = redact(text, front.config.location)
    finally:
        await front.aclose()
    return row


async def _round_trip(front: Broadcast) -> float:
    nonce = uuid.uuid4().hex
    async with front.subscribe(PROBE_CHANNEL) as sub:
        started = time.perf_counter()
        await front.apublish(PROBE_CHANNEL, {"probe": nonce})
        deadline = started + front.timeout
        while True:  # concurrent `status` runs share the channel: wait for our nonce
            remaining = max(deadline - time.perf_counter(), 0.0)
            event = await sub.get(remaining)
            if isinstance(event.message, dict) and event.message.get("probe") == nonce:
                return time.perf_counter() - started
