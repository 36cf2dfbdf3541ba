"""The notifications of the ``LISTEN`` connection, read as they arrive.

While nothing runs on the connection, the event loop watches its socket and
hands what arrives to libpq, which keeps the notifications for
`NotificationReader` to collect: no task, future or ``notifies()`` generator
per batch (psycopg's ``notifies()`` would also hold the connection while it
waits). The `Listener` stops the reading before each statement on that
connection and starts it again after; notifications arriving with a
statement's results reach the reader through psycopg's notify handler.

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
    """Collects the notifications of ``conn`` into `notes`, calling ``wake`` on each
    arrival and when the reading ends by itself (silent or failed)."""

    def __init__(self, conn: Connection, liveness: float | None, wake: Callable[[], None]) -> None:
        self._conn = conn
        self._liveness = liveness
        self._wake = wake
        #: Received, not taken yet (`take`), in arrival order.
        self.notes: list[psycopg.Notify] = []
        #: The reading stopped after ``liveness`` seconds without a notification.
        self.silent = False
        #: What ended the reading, if the connection failed.
        self.failure: Exception | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1  # watched while >= 0
        self._timer: asyncio.TimerHandle | None = None
        self._heard = 0.0  # loop time of the last notification (or of the start)
        conn.add_notify_handler(self._arrived)

    @property
    def running(self) -> bool:
        """Whether the socket is watched (``False`` before `start` and after `stop`)."""
        return self._fd >= 0

    def take(self) -> list[psycopg.Notify]:
        """The notifications received since the last call, oldest first."""
        notes, self.notes = self.notes, []
        return notes

    def start(self) -> None:
        """Read (again) as notifications arrive; nothing else may run on the connection
        until `stop`."""
        loop = self._loop = asyncio.get_running_loop()
        self.silent = False
        try:
            self._fd = self._conn.fileno()
        except psycopg.Error as exc:  # closed meanwhile
            self._fail(exc)
            return
        loop.add_reader(self._fd, self._readable)
        if self._liveness is not None:
            self._heard = loop.time()
            self._timer = loop.call_at(self._heard + self._liveness, self._check)
        self._collect()  # any that libpq holds already: the socket stays quiet for those

    def stop(self) -> None:
        """Stop reading: statements may run on the connection again."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)
        self._fd = -1

    def _readable(self) -> None:
        try:
            self._conn.pgconn.consume_input()
        except psycopg.Error as exc:  # the connection is lost
            self._fail(exc)
            return
        self._collect()

    def _collect(self) -> None:
        """Hand what libpq holds to psycopg's notify handler, so to `_arrived`."""
        pgconn = self._conn.pgconn
        handler = pgconn.notify_handler
        while (note := pgconn.notifies()) is not None:
            if handler is not None:
                handler(note)

    def _arrived(self, note: psycopg.Notify) -> None:
        self.notes.append(note)
        if self._loop is not None:
            self._heard = self._loop.time()
        self._wake()

    def _check(self) -> None:
        """The silence timer: stop the reading as `silent`, or wait for the rest of
        the interval after the last notification."""
        assert self._liveness is not None and self._loop is not None
        due = self._heard + self._liveness
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check)
            return
        self._timer = None
        self.stop()
        self.silent = True
        self._wake()

    def _fail(self, exc: Exception) -> None:
        self.stop()
        self.failure = exc
        self._wake()
