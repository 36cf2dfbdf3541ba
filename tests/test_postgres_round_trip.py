"""`round_trip.Statement`, the publish's statement sent through libpq, on a real
connection: values both ways, errors, preparing once, a publish cancelled or cut
off in flight, values larger than the socket takes at once.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from django_broadcaster.backends.postgres.round_trip import Statement

from .support.backends import POSTGRES_URL

Conn = psycopg.AsyncConnection[Any]
#: An advisory lock key of these tests (the backend's own use class LOCK_CLASS).
KEY = 7_340_033


@pytest.fixture
async def conn() -> AsyncIterator[Conn]:
    connection = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
    yield connection
    await connection.close()


@pytest.fixture
async def admin() -> AsyncIterator[Conn]:
    connection = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
    yield connection
    await connection.close()


async def fetch(conn: Conn, query: str, *params: object) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query, params or None)
    return await cursor.fetchall()


async def prepared_names(conn: Conn) -> list[str]:
    rows = await fetch(conn, "SELECT name FROM pg_prepared_statements ORDER BY name")
    return [name for (name,) in rows]


async def blocked_on_lock(admin: Conn, pid: int) -> None:
    """Wait until backend ``pid`` waits for an advisory lock."""
    for _ in range(200):
        rows = await fetch(admin, "SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted", pid)
        if rows:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited for the lock")


async def test_values_both_ways_and_an_error_leaves_the_connection_ready(conn: Conn) -> None:
    divide = Statement(b"test_divide", b"SELECT 10 / $1::int4, $2::text, $3::bytea")
    result = await divide.run(conn, [2, "é ✓", b"\x00\xff"])
    assert [result.get_value(0, column) for column in range(3)] == [
        b"5",
        "é ✓".encode(),
        b"\\x00ff",
    ]
    with pytest.raises(psycopg.errors.DivisionByZero):
        await divide.run(conn, [0, "x", b""])
    assert not conn.lock.locked()
    assert await fetch(conn, "SELECT 1") == [(1,)]  # psycopg uses the connection again
    result = await divide.run(conn, [5, None, None])
    assert [result.get_value(0, column) for column in range(3)] == [b"2", None, None]


async def test_prepared_once_per_connection(conn: Conn) -> None:
    once = Statement(b"test_once", b"SELECT $1::int4 + 1")
    for number in range(3):
        assert (await once.run(conn, [number])).get_value(0, 0) == str(number + 1).encode()
    assert await prepared_names(conn) == ["test_once"]
    other = await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True)
    try:  # a new connection (the backend reconnected): prepared there too
        assert (await once.run(other, [41])).get_value(0, 0) == b"42"
        assert await prepared_names(other) == ["test_once"]
    finally:
        await other.close()


async def test_runs_racing_on_a_new_connection_prepare_once(conn: Conn) -> None:
    racing = Statement(b"test_racing", b"SELECT $1::int4 * 2")
    results = await asyncio.gather(*(racing.run(conn, [number]) for number in range(5)))
    assert [result.get_value(0, 0) for result in results] == [b"0", b"2", b"4", b"6", b"8"]
    assert await prepared_names(conn) == ["test_racing"]


async def test_a_statement_that_fails_to_prepare_fails_again_the_same_way(conn: Conn) -> None:
    broken = Statement(b"test_broken", b"SELEC $1::int4")
    for _ in range(2):  # not "prepared statement does not exist" the second time
        with pytest.raises(psycopg.errors.SyntaxError):
            await broken.run(conn, [1])
    assert await prepared_names(conn) == []


async def test_without_prepare_threshold_nothing_is_prepared(conn: Conn) -> None:
    conn.prepare_threshold = None  # as behind a pooler that cannot keep prepared statements
    whole = Statement(b"test_whole", b"SELECT $1::text || '!'")
    for _ in range(2):
        assert (await whole.run(conn, ["hi"])).get_value(0, 0) == b"hi!"
    assert await prepared_names(conn) == []


async def test_a_statement_cancelled_in_flight_completes_and_the_connection_stays_ready(
    conn: Conn, admin: Conn
) -> None:
    await conn.execute("CREATE TEMP TABLE seen (v text)")
    record = Statement(
        b"test_record",
        b"WITH l AS MATERIALIZED (SELECT pg_advisory_xact_lock(%d)) "
        b"INSERT INTO seen SELECT $1::text FROM l RETURNING v" % KEY,
    )
    await fetch(admin, "SELECT pg_advisory_lock(%s)", KEY)
    publish = asyncio.create_task(record.run(conn, ["first"]))
    await blocked_on_lock(admin, conn.info.backend_pid)
    publish.cancel()
    with pytest.raises(asyncio.CancelledError):
        await publish
    assert conn.lock.locked()  # still in flight: psycopg's statements wait for it
    await fetch(admin, "SELECT pg_advisory_unlock(%s)", KEY)
    assert (await record.run(conn, ["second"])).get_value(0, 0) == b"second"
    assert await fetch(conn, "SELECT v FROM seen") == [("first",), ("second",)]


async def test_a_connection_cut_off_in_flight_raises_and_frees_the_lock(
    conn: Conn, admin: Conn
) -> None:
    wait = Statement(b"test_wait", b"SELECT pg_advisory_xact_lock($1::int8)")
    await fetch(admin, "SELECT pg_advisory_lock(%s)", KEY)
    try:
        publish = asyncio.create_task(wait.run(conn, [KEY]))
        await blocked_on_lock(admin, conn.info.backend_pid)
        await fetch(admin, "SELECT pg_terminate_backend(%s)", conn.info.backend_pid)
        with pytest.raises(psycopg.OperationalError):
            await asyncio.wait_for(publish, 10)
        assert not conn.lock.locked()
    finally:
        await fetch(admin, "SELECT pg_advisory_unlock(%s)", KEY)


async def test_a_closed_connection_raises_operational_error(conn: Conn) -> None:
    await conn.close()
    with pytest.raises(psycopg.OperationalError):
        await Statement(b"test_closed", b"SELECT $1::int4").run(conn, [1])


async def test_values_larger_than_the_socket_takes_at_once(conn: Conn) -> None:
    size = Statement(b"test_size", b"SELECT length($1::bytea), md5($1::bytea)")
    value = bytes(range(256)) * (64 * 1024)  # 16 MiB: sent in parts, the rest when writable
    result = await size.run(conn, [value])
    assert result.get_value(0, 0) == str(len(value)).encode()
    assert result.get_value(0, 1) == hashlib.md5(value).hexdigest().encode()
