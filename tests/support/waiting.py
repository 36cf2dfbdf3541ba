"""Bounded waits shared by the tests: a broken behaviour fails, never hangs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from django_broadcaster.layers import BroadcastChannelLayer

#: Seconds any single wait may take.
TIMEOUT = 10
#: Seconds of silence that count as "nothing arrives".
QUIET = 0.4


async def eventually(condition: Callable[[], object], timeout: float = TIMEOUT) -> None:
    """Return once ``condition()`` is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition never became true"
        await asyncio.sleep(0.02)


async def receive(layer: BroadcastChannelLayer, channel: str) -> dict[str, Any]:
    """The next message of ``channel``, within `TIMEOUT`."""
    return await asyncio.wait_for(layer.receive(channel), TIMEOUT)


async def nothing_on(layer: BroadcastChannelLayer, channel: str) -> bool:
    """``True`` when ``channel`` stays quiet for `QUIET` seconds."""
    try:
        message = await asyncio.wait_for(layer.receive(channel), QUIET)
    except asyncio.TimeoutError:
        return True
    raise AssertionError(f"{channel} unexpectedly received {message}")
