"""A small Server-Sent Events client over httpx, parsing the stream as the HTML spec does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Message:
    """One dispatched block: an event (``data`` set), or only comments/an id."""

    event: str = "message"
    data: str | None = None
    id: str | None = None
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    @property
    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


class EventStream:
    """An open ``text/event-stream`` response; ``last_id`` follows EventSource's rules."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.last_id: str | None = None
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 10.0) -> Message:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> Message:
        message = Message()
        data: list[str] = []
        seen = False
        async for line in self._lines:
            if line == "":
                if seen:
                    if data:
                        message.data = "\n".join(data)
                    return message
                continue
            seen = True
            if line.startswith(":"):
                message.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                message.event = value
            elif name == "id":
                message.id = self.last_id = value
            elif name == "retry":
                message.retry = int(value)
        raise EOFError("the event stream ended")

    async def next_event(self, timeout: float = 10.0) -> Message:
        """The next block carrying data (skips keep-alives and id-only blocks)."""
        while True:
            message = await self.next(timeout)
            if message.data is not None:
                return message


@asynccontextmanager
async def open_stream(
    url: str, *, last_event_id: str | None = None, params: dict[str, Any] | None = None
) -> AsyncIterator[EventStream]:
    """Open the stream on its own connection; leaving the block disconnects."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    timeout = httpx.Timeout(10.0, read=None)
    async with (
        httpx.AsyncClient(timeout=timeout) as client,
        client.stream("GET", url, headers=headers, params=params) as response,
    ):
        yield EventStream(response)
