"""RESP on the backends' own connections: one round trip, and the shape of replies.

These connections speak RESP2 and return bytes (``protocol=2``,
``decode_responses=False``), so replies have one shape on every supported
redis-py version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

pack_command: Callable[[tuple[Any, ...]], bytes] | None
try:  # hiredis (in the ``redis`` extra) packs a command in a quarter of redis-py's time
    from hiredis import pack_command
except ImportError:  # pragma: no cover - redis-py packs, as it always can
    pack_command = None


def pack(connection: AbstractConnection, commands: Sequence[tuple[Any, ...]]) -> Any:
    """``commands`` in RESP, ready for ``send_packed_command``: through hiredis when it
    is installed and takes every argument (str, bytes, int, float), else redis-py."""
    if pack_command is not None:
        try:
            return b"".join([pack_command(command) for command in commands])
        except TypeError:
            pass  # an argument only redis-py encodes (or refuses with its own error)
    return connection.pack_commands(commands)


async def round_trip(
    connection: AbstractConnection, commands: Sequence[tuple[Any, ...]]
) -> list[Any]:
    """Send ``commands`` in one write and read their replies in order; an error
    reply comes back as a `ResponseError` instance instead of being raised, so
    the replies after it are still read."""
    await connection.send_packed_command(pack(connection, commands))
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(await connection.read_response(disconnect_on_error=False))
        except ResponseError as exc:
            replies.append(exc)
    return replies


def raise_errors(replies: list[Any]) -> list[Any]:
    """``replies``, unless one is an error reply: then raise the first."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def key_error(action: str, channel: str, name: str, reply: Exception) -> Exception:
    """The error to raise for ``reply``, an error reply about one channel (Redis key or
    channel ``name``), in a line saying what failed and, for a key that is not a
    stream, how to fix it. Of the reply's class, so callers may catch either."""
    if "WRONGTYPE" in str(reply):
        return type(reply)(
            f"cannot {action} channel {channel!r}: Redis key {name!r} holds another type "
            "than a stream (WRONGTYPE); give the alias a KEY_PREFIX to keep broadcast "
            "streams apart from other data"
        )
    return type(reply)(f"cannot {action} channel {channel!r} ({name!r} in Redis): {reply}")


def text(value: bytes | str) -> str:
    """A bulk string reply (an id, a type name) as ``str``."""
    return value.decode() if isinstance(value, bytes) else value
