"""The notifications of the ``LISTEN`` connection, collected by one long-lived task.

psycopg's ``notifies()`` holds the connection while it waits, so nothing else
runs on it meanwhile: the `Listener` stops the reading (`NotificationReader.stop`)
before each statement there and starts it again after. In between, one task
collects notifications as they arrive, however many batches go by, instead
of a task, a timeout and a ``notifies()`` set up for each batch.

Silence is timed by one timer, moved on only when it fires: ``liveness``
seconds after the last notification (or the start), the reading stops as
`silent`, and the listener probes the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg

from .connections import Connection


class NotificationReader:
    """Reads the notifications of ``conn`` into `notes`, calling ``wake`` on each
    arrival and when the reading ends (stopped, silent or failed)."""

    def __init__(self, conn: Connection, liveness: float | None, wake: Callable[[], None]) -> None:
        self._conn = conn
        self._liveness = liveness
        self._wake = wake
        #: Received, not taken yet (`take`), in arrival order.
        self.notes: list[psycopg.Notify] = []
        #: The reading ended after ``liveness`` seconds without a notification.
        self.silent = False
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._heard = 0.0  # loop time of the last notification (or of the start)

    @property
    def running(self) -> bool:
        """Whether the task reads (``False`` before `start` and once it ended)."""
        return self._task is not None and not self._task.done()

    def take(self) -> list[psycopg.Notify]:
        """The notifications received since the last call, oldest first."""
        notes, self.notes = self.notes, []
        return notes

    def start(self) -> None:
        """Start reading (again); the connection must be free."""
        loop = asyncio.get_running_loop()
        self.silent = False
        self._task = loop.create_task(self._read(loop))
        self._task.add_done_callback(self._ended)
        if self._liveness is not None:
            self._heard = loop.time()
            self._timer = loop.call_at(self._heard + self._liveness, self._check, loop)

    async def stop(self) -> None:
        """Stop reading; the connection is free once this returns. Notifications
        arriving meanwhile are kept by psycopg for the next `start`."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait((task,))

    def raise_failure(self) -> None:
        """Raise the error that ended the reading, if any (a lost connection)."""
        task = self._task
        if task is not None and task.done() and not task.cancelled():
            error = task.exception()
            if error is not None:
                raise error

    async def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        async for note in self._conn.notifies():
            self.notes.append(note)
            self._heard = loop.time()
            self._wake()

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        """The silence timer: stop the reading as `silent`, or wait for the rest of
        the interval after the last notification."""
        assert self._liveness is not None and self._task is not None
        due = self._heard + self._liveness
        if loop.time() < due:
            self._timer = loop.call_at(due, self._check, loop)
            return
        self._timer = None
        self.silent = True
        self._task.cancel()

    def _ended(self, task: asyncio.Task[None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not task.cancelled():
            task.exception()  # retrieved here; `raise_failure` raises it
        self._wake()
