"""`wire.round_trip` on a real connection: commands packed by hiredis when it takes
every argument, by redis-py otherwise, with the same bytes and the same replies."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError, ResponseError

from django_broadcaster.backends.redis import wire
from django_broadcaster.backends.redis.connection import RedisConnections

from .support.backends import REDIS_URL

COMMANDS = [
    ("SET", "key", b"\x00\xff bytes", "PX", 60_000),
    ("INCRBYFLOAT", "number", 1.5),
    ("ECHO", "é ünïcode"),
]


def test_hiredis_packs_the_bytes_redis_py_would() -> None:
    assert wire.pack_command is not None, "hiredis is in the redis extra"
    connection = Connection(protocol=2)
    assert wire.pack(connection, COMMANDS) == b"".join(connection.pack_commands(COMMANDS))


@pytest.fixture
async def connections() -> AsyncIterator[RedisConnections]:
    connections = RedisConnections("test", REDIS_URL, {"socket_timeout": 5})
    await connections.connect()
    try:
        yield connections
    finally:
        await connections.close()


async def test_replies_in_order_with_error_replies_in_place(
    connections: RedisConnections,
) -> None:
    prefix = f"wire-test:{uuid.uuid4().hex}:"
    replies: list[Any] = await connections.execute(
        ("SET", prefix + "a", b"\x00\xff", "PX", 60_000),
        ("LPUSH", prefix + "a", "x"),  # WRONGTYPE: an error reply, in its place
        ("INCRBYFLOAT", prefix + "n", 1.5),
        ("GET", prefix + "a"),
        ("ECHO", "é"),
    )
    assert replies[0] is True or replies[0] == b"OK"
    assert isinstance(replies[1], ResponseError)
    assert replies[2:] == [b"1.5", b"\x00\xff", "é".encode()]
    await connections.execute(("DEL", prefix + "a", prefix + "n"))


def test_an_argument_hiredis_refuses_gets_redis_py_s_error() -> None:
    with pytest.raises(DataError, match="NoneType"):
        wire.pack(Connection(protocol=2), [("SET", "key", None)])
