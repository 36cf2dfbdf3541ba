"""Appending events to streams: a script running ``XADD ... MAXLEN ~ N``, then, with
``IDLE_RETENTION``, ``PEXPIRE`` on the key, then ``PUBLISH`` of an empty
wake-up for the stream's readers (see ``stream_wakes``).

The time to live is set only after the ``XADD`` succeeded: a bare ``PEXPIRE``
next to the ``XADD`` would also set (or stretch) a time to live on a key of
another program's that happens to have a channel's name, where the ``XADD``
fails with ``WRONGTYPE`` (which also ends the script before the wake-up). The
script goes as ``EVALSHA``; a server that does not know it yet (first use, a
restart, ``SCRIPT FLUSH``, a promoted replica) answers ``NOSCRIPT``, and those
events are sent again after ``SCRIPT LOAD`` (which a cluster runs on every
master).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from .cluster import ClusterConnections, key_of
from .connection import RedisConnections
from .wire import raise_errors

#: The name of the stream entry field carrying the payload.
FIELD = b"data"
#: ``XADD``, ``PEXPIRE`` (unless ARGV[3] is empty), ``PUBLISH`` (unless ARGV[4] is
#: empty); an ``XADD`` error ends the script. KEYS[1] the stream; ARGV: MAXLEN,
#: the payload, the time to live in ms or nothing, the wake-up channel or nothing.
XADD_WAKE = (
    f"local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', '{FIELD.decode()}', "
    "ARGV[2])\n"
    "if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end\n"
    "if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], '') end\n"
    "return id\n"
)
XADD_WAKE_SHA = hashlib.sha1(XADD_WAKE.encode()).hexdigest()


class StreamPublisher:
    """Builds and sends the commands appending events to streams, one round trip
    per batch on the backend's command connection (per node on a cluster, where
    each append is followed by an empty ``SPUBLISH`` on the stream's name: the
    readers' wake-up, see ``cluster_streams``)."""

    def __init__(
        self, connections: RedisConnections, maxlen: int, idle_retention: float | None
    ) -> None:
        self._connections = connections
        self._maxlen = maxlen
        self._wake = isinstance(connections, ClusterConnections)
        # Milliseconds, at least 1; empty: keys never expire.
        self._ttl_ms = "" if idle_retention is None else max(1, math.ceil(idle_retention * 1000))

    def _command(self, key: str, wake: str, payload: bytes) -> tuple[Any, ...]:
        # A cluster's readers are woken by the SPUBLISH after the script instead.
        wake = "" if self._wake else wake
        return ("EVALSHA", XADD_WAKE_SHA, 1, key, self._maxlen, payload, self._ttl_ms, wake)

    async def send(self, entries: Sequence[tuple[str, str, bytes]]) -> list[Any]:
        """Append each ``(key, wake-up channel, payload)``, in order; return each
        one's reply: its id, or the error reply for its key alone."""
        commands = [self._command(key, wake, payload) for key, wake, payload in entries]
        replies = await self._execute(commands)
        missing = [index for index, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            # Those were not appended (on a cluster, some nodes may know the script
            # and others not): load it, then send them again.
            raise_errors(await self._connections.execute(("SCRIPT", "LOAD", XADD_WAKE)))
            again = await self._execute([commands[index] for index in missing])
            for index, reply in zip(missing, again, strict=True):
                replies[index] = reply
        return replies

    async def _execute(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if not self._wake:
            return await self._connections.execute(*commands)
        woken = [sent for c in commands for sent in (c, ("SPUBLISH", key_of(c), b""))]
        return (await self._connections.execute(*woken))[::2]
