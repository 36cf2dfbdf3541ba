"""`SharedTrips`: the work-queue calls of one event loop share round trips.

A sender awaits each ``enqueue`` (its reply says whether the queue was full) and
a receiving loop's feed calls ``dequeue`` after each wake-up: each is a round
trip on the backend's command connection, and, one after the other, a busy
queue cost two per message. Here a call made while another round trip is in
flight waits for the next one, which carries the commands of every call that
queued meanwhile: the fetch rides along with the next send.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ... import loops

#: Most commands sent in one round trip (the calls queued beyond wait for the next).
MAX_COMMANDS = 500

#: Sends commands in one round trip and returns their replies in order (an error
#: reply as an exception instance): `RedisConnections.execute`.
Execute = Callable[..., Awaitable[list[Any]]]
Command = tuple[Any, ...]
#: A queued call: its commands and the future of their replies.
Call = tuple[tuple[Command, ...], asyncio.Future[list[Any]]]


class SharedTrips:
    """Round trips shared by the concurrent calls of one event loop.

    A call finding no round trip in flight sends its commands at once. Calls made
    meanwhile queue up; when it returns, one background task sends the queued
    commands, each call's together and in order, and does so again while calls
    queue. A queued call cancelled before its turn sends nothing; one cancelled
    in flight loses its replies (as when its connection is dropped).
    """

    def __init__(self, execute: Execute) -> None:
        self._execute = execute
        self._busy = False
        self._queued: deque[Call] = deque()
        #: The task sending the queued calls (held here: the loop keeps only a weak reference).
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, *commands: Command) -> list[Any]:
        """Send ``commands`` in one round trip, maybe with other calls', and return
        their replies in order (an error reply as an exception instance)."""
        if self._busy:
            future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self._queued.append((commands, future))
            return await future
        self._busy = True
        try:
            return await self._execute(*commands)
        finally:
            if self._queued:
                self._flusher = asyncio.get_running_loop().create_task(self._flush())
            else:
                self._busy = False

    def _next_batch(self) -> list[Call]:
        """The queued calls still waiting that fit in a round trip (at least one)."""
        batch: list[Call] = []
        size = 0
        queued = self._queued
        while queued and (not batch or size + len(queued[0][0]) <= MAX_COMMANDS):
            commands, future = queued.popleft()
            if not future.done():  # not cancelled meanwhile
                batch.append((commands, future))
                size += len(commands)
        return batch

    async def _flush(self) -> None:
        try:
            while self._queued:
                batch = self._next_batch()
                if not batch:
                    continue
                try:
                    replies = await self._execute(*[c for commands, _ in batch for c in commands])
                except loops.ERRORS_AND_CANCELLATION as exc:
                    for _, future in batch:
                        if not future.done():
                            if isinstance(exc, Exception):
                                future.set_exception(exc)
                            else:
                                future.cancel()
                    if isinstance(exc, Exception):
                        continue
                    raise
                start = 0
                for commands, future in batch:
                    end = start + len(commands)
                    if not future.done():
                        future.set_result(replies[start:end])
                    start = end
                # Let the callers just answered queue their next commands first: a
                # sender's next send then shares the round trip with the fetch.
                await asyncio.sleep(0)
        finally:
            while self._queued:  # stopped by a cancellation (the loop is closing)
                self._queued.popleft()[1].cancel()
            self._busy = False
            self._flusher = None
