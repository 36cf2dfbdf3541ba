"""Appending events to streams: ``XADD ... MAXLEN ~ N`` and, with ``IDLE_RETENTION``,
the key's time to live refreshed in the same step.

The time to live is set by a script that runs ``PEXPIRE`` only after its
``XADD`` succeeded: a bare ``PEXPIRE`` next to the ``XADD`` would also set (or
stretch) a time to live on a key of another program's that happens to have a
channel's name, where the ``XADD`` fails with ``WRONGTYPE``. The script goes as
``EVALSHA``; a server that does not know it yet (first use, a restart,
``SCRIPT FLUSH``) answers ``NOSCRIPT``, and the batch is sent again after
``SCRIPT LOAD``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from .connection import RedisConnections
from .wire import raise_errors

#: The name of the stream entry field carrying the payload.
FIELD = b"data"
#: ``XADD`` then ``PEXPIRE``; an ``XADD`` error ends the script before the ``PEXPIRE``.
#: KEYS[1] the stream; ARGV: MAXLEN, the payload, the time to live in ms.
XADD_EXPIRE = (
    f"local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', '{FIELD.decode()}', "
    "ARGV[2])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
    "return id\n"
)
XADD_EXPIRE_SHA = hashlib.sha1(XADD_EXPIRE.encode()).hexdigest()


class StreamPublisher:
    """Builds and sends the commands appending events to streams, one round trip
    per batch on the backend's command connection."""

    def __init__(
        self, connections: RedisConnections, maxlen: int, idle_retention: float | None
    ) -> None:
        self._connections = connections
        self._maxlen = maxlen
        # Milliseconds, at least 1; None: keys never expire.
        self._ttl_ms = None if idle_retention is None else max(1, math.ceil(idle_retention * 1000))

    def _command(self, key: str, payload: bytes) -> tuple[Any, ...]:
        if self._ttl_ms is None:
            return ("XADD", key, "MAXLEN", "~", self._maxlen, "*", FIELD, payload)
        return ("EVALSHA", XADD_EXPIRE_SHA, 1, key, self._maxlen, payload, self._ttl_ms)

    async def send(self, entries: Sequence[tuple[str, bytes]]) -> list[Any]:
        """Append each ``(key, payload)``, in order; return each one's reply: its id,
        or the error reply for its key alone."""
        commands = [self._command(key, payload) for key, payload in entries]
        replies = await self._connections.execute(*commands)
        if self._ttl_ms is not None and all(isinstance(r, NoScriptError) for r in replies):
            # Nothing was appended: load the script, then send the batch again.
            raise_errors(await self._connections.execute(("SCRIPT", "LOAD", XADD_EXPIRE)))
            replies = await self._connections.execute(*commands)
        return replies
