"""Ending an event stream when its response is closed, wherever the stream stands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import suppress
from typing import Any


class StreamCloser:
    """Ends ``stream`` on `close`, from any thread, at once.

    A stream parked at a ``yield`` is closed (``aclose()``); one busy awaiting
    (reading its subscription, say) cannot be closed by asyncio, so the task
    iterating it is cancelled — what an ASGI server does when the client leaves.
    The stream reports `started` and `resumed` so that this task is known.
    """

    def __init__(self, stream: AsyncGenerator[bytes, None]) -> None:
        self._stream = stream
        self._loop: asyncio.AbstractEventLoop | None = None
        self._driver: asyncio.Task[Any] | None = None
        self._closing: asyncio.Task[None] | None = None

    def started(self) -> None:
        """Called by the stream when it starts, on its event loop."""
        self._loop = asyncio.get_running_loop()
        self._driver = asyncio.current_task()

    def resumed(self) -> None:
        """Called by the stream after each ``yield``: the task iterating it now."""
        self._driver = asyncio.current_task()

    def close(self) -> None:
        """End the stream soon after this call, from any thread (a no-op if it never
        started or has ended)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._end)

    def _end(self) -> None:
        if getattr(self._stream, "ag_frame", None) is None:
            return  # finished
        if getattr(self._stream, "ag_running", False):
            driver = self._driver
            if driver is not None and not driver.done():
                driver.cancel()
        elif self._closing is None or self._closing.done():
            self._closing = asyncio.ensure_future(self._aclose())

    async def _aclose(self) -> None:
        try:
            await self._stream.aclose()
        except RuntimeError:
            self._end()  # iterated again meanwhile: busy now
