"""One statement sent through a psycopg connection's libpq handle, for the publish
of one event.

psycopg's ``execute`` spends about 100 µs of client CPU on each call (a cursor,
the query's conversion, generators, a reader registered and removed per wait):
measured here, 160-190 µs per one-row statement against 50-65 µs for the same
protocol messages sent through ``conn.pgconn``. A publish awaited one at a time
pays that on every event, so `Statement` sends the publish this way; every
other statement stays on psycopg.

The round trip holds psycopg's connection lock (``conn.lock``) from the first
message sent to the last result read, so psycopg's own statements and
`connections.shut` wait for it. It is driven by a reader callback, not by the
awaiting coroutine: a publish cancelled in flight lets its statement complete
(the event may be stored, as with psycopg) and leaves the connection ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import psycopg
from psycopg import pq

from .connections import Connection

#: A statement parameter: text (``str``, ``int``), binary (``bytes``) or ``NULL``.
Value = str | int | bytes | None
#: Sends one command on a libpq connection.
Send = Callable[[pq.abc.PGconn], None]
#: A command to send, and what to call once its results are read without error.
Step = tuple[Send, Callable[[], None] | None]


class Statement:
    """``text`` with ``$1``, ``$2``... placeholders, prepared as ``name`` once per
    connection (unless the connection's ``prepare_threshold`` is ``None``: behind a
    pooler that cannot keep prepared statements, it is sent whole every time)."""

    def __init__(self, name: bytes, text: bytes) -> None:
        self._name = name
        self._text = text
        self._prepared_on: Connection | None = None

    async def run(self, conn: Connection, values: Sequence[Value]) -> pq.abc.PGresult:
        """Run on ``conn`` and return the result (text values); raises psycopg's
        error for the statement, or `psycopg.OperationalError` when the
        connection fails."""
        if conn.closed:
            raise psycopg.OperationalError("the connection is closed")
        encoding = conn.info.encoding
        params = [_encoded(value, encoding) for value in values]
        formats = [int(isinstance(value, bytes)) for value in values]
        await conn.lock.acquire()  # before looking at what is prepared: runs may race
        steps: list[Step] = []
        if conn.prepare_threshold is None:
            steps.append((lambda pg: pg.send_query_params(self._text, params, None, formats), None))
        else:
            if self._prepared_on is not conn:
                steps.append(
                    (lambda pg: pg.send_prepare(self._name, self._text), self._prepared(conn))
                )
            steps.append((lambda pg: pg.send_query_prepared(self._name, params, formats), None))
        return await RoundTrip(conn, steps, encoding).done

    def _prepared(self, conn: Connection) -> Callable[[], None]:
        def mark() -> None:
            self._prepared_on = conn

        return mark


def _encoded(value: Value, encoding: str) -> bytes | None:
    """``value`` as libpq sends it: text in the connection's encoding, bytes as they are."""
    if isinstance(value, str):
        return value.encode(encoding)
    if isinstance(value, int):
        return str(value).encode()
    return value


class RoundTrip:
    """Sends ``steps`` one after the other on ``conn`` (whose lock the caller holds),
    each once the previous one's results are read; `done` gets the last step's
    result, or the first error. The lock is released when nothing is left to read,
    whether or not anyone still awaits `done`."""

    __slots__ = ("_conn", "_encoding", "_error", "_fd", "_loop", "_pg", "_result", "_steps", "done")

    def __init__(self, conn: Connection, steps: list[Step], encoding: str) -> None:
        self._conn = conn
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[pq.abc.PGresult] = self._loop.create_future()
        self._steps = steps
        self._encoding = encoding
        self._result: pq.abc.PGresult | None = None
        self._error: Exception | None = None
        self._fd = -1
        try:
            self._pg = conn.pgconn
            self._fd = self._pg.socket
            self._loop.add_reader(self._fd, self._readable)
            self._send()
        except Exception as exc:
            self._finish(exc)

    def _send(self) -> None:
        self._steps[0][0](self._pg)
        if self._pg.flush():  # more than the socket took: send the rest when writable
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        try:
            if not self._pg.flush():
                self._loop.remove_writer(self._fd)
        except Exception as exc:
            self._finish(exc)

    def _readable(self) -> None:
        pg = self._pg
        try:
            pg.consume_input()
            while not pg.is_busy():
                result = pg.get_result()
                if result is None:  # this step's results are all read
                    _, succeeded = self._steps.pop(0)
                    if self._error is None and succeeded is not None:
                        succeeded()
                    if self._error is None and self._steps:
                        self._send()
                        return
                    self._finish(self._error)
                    return
                if result.status == pq.ExecStatus.FATAL_ERROR and self._error is None:
                    self._error = psycopg.errors.error_from_result(result, self._encoding)
                self._result = result
        except Exception as exc:
            self._finish(exc)

    def _finish(self, error: Exception | None) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
            self._fd = -1
        if error is not None and not isinstance(error, psycopg.Error):
            error = psycopg.OperationalError(f"the connection failed: {error}")
        self._conn.lock.release()
        if self.done.done():  # the publish was cancelled: nobody waits
            return
        if error is not None:
            self.done.set_exception(error)
        elif self._result is None:  # pragma: no cover - every command has a result
            self.done.set_exception(psycopg.OperationalError("no result"))
        else:
            self.done.set_result(self._result)
