"""Coalescing concurrent publishes: while one is in flight, later ones queue up and
go out together in one pipelined batch (up to `PUBLISH_BATCH` events)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress

from . import loops

PUBLISH_BATCH = 500

#: Sends ``(channel, payload)`` pairs in order and returns, in order, each one's id
#: or the exception that event alone met.
Send = Callable[[Sequence[tuple[str, bytes]]], Awaitable[list[str | Exception | None]]]


class PublishBatcher:
    """Publishes of one event loop; ``closed_error()`` is what queued ones get at close."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Send,
        closed_error: Callable[[], Exception],
    ) -> None:
        self._loop = loop
        self._send = send
        self._closed_error = closed_error
        self._publishing = False
        self._queued: list[tuple[str, bytes, asyncio.Future[str | None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def publish(self, channel: str, payload: bytes) -> str | None:
        """Send one event; while another send is in flight, wait for the next batch."""
        if self._publishing:
            future: asyncio.Future[str | None] = self._loop.create_future()
            self._queued.append((channel, payload, future))
            return await future
        self._publishing = True
        try:
            (result,) = await self._send([(channel, payload)])
            if isinstance(result, Exception):
                raise result
            return result
        finally:
            if self._queued:
                self._flusher = self._loop.create_task(self._flush())
            else:
                self._publishing = False

    async def _flush(self) -> None:
        try:
            while self._queued:
                batch = self._queued[:PUBLISH_BATCH]
                del self._queued[:PUBLISH_BATCH]
                try:
                    ids = await self._send([(channel, payload) for channel, payload, _ in batch])
                except loops.ERRORS_AND_CANCELLATION as exc:
                    failure = exc if isinstance(exc, Exception) else self._closed_error()
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(failure)
                    if isinstance(exc, Exception):
                        continue  # told to every publish of the batch: go on with the next
                    raise
                for (*_, future), result in zip(batch, ids, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                # Let the publishers just woken queue their next events first, so
                # concurrent publishers keep going out together instead of as a
                # batch of one followed by a batch of the rest.
                await asyncio.sleep(0)
        finally:
            self._publishing = False

    async def close(self) -> None:
        """Fail every queued publish with ``closed_error()`` and stop the batch in flight."""
        for *_, future in self._queued:
            if not future.done():
                future.set_exception(self._closed_error())
        self._queued.clear()
        flusher = self._flusher
        if flusher is not None and not flusher.done() and flusher is not asyncio.current_task():
            flusher.cancel()
            with suppress(BaseException):
                await flusher
