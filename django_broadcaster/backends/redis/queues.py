"""Work queues on Redis, for both Redis backends: one list per queue.

A queue ``Q`` is the list ``{<wire name of Q>}|queue`` (``|`` cannot occur in a
channel name, so no channel's key collides with it; the braces put it in the
hash slot of ``Q``'s own key on a Redis Cluster, so a send and its wake-up go
to one node, in order). Each item is the
message's deadline (16 digits, milliseconds since the epoch) followed by the
payload. Sending runs `ENQUEUE`, a script that drops the expired items at the
head, refuses a full queue and appends (sent as ``EVALSHA``; loaded after a
``NOSCRIPT``); the wake-up is published on channel ``Q`` in the same round
trip. Taking is ``LPOP key count`` (Redis 6.2): atomic, so no item reaches two
receivers; expired items are dropped by the taker. Every push sets the key's
time to live to the queue's expiry: a queue nobody sends to any more is gone
with its last message. The queue calls of one event loop share round trips
(`SharedTrips`): on a busy queue a receiver's fetch goes with the next send.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import NoScriptError

from ..base import BackendConfig
from .connection import RedisConnections
from .shared_trips import SharedTrips
from .wire import raise_errors


def queue_key(wire_name: str) -> str:
    """The list key of the queue whose channel's engine-side name is ``wire_name``."""
    return "{" + wire_name + "}|queue"


#: Digits of the deadline at the head of every item.
DEADLINE_DIGITS = 16

#: KEYS[1] the list; ARGV: now (ms), capacity, the item, time to live (ms).
#: Returns 1 when the item was appended, 0 when the queue was full.
ENQUEUE = f"""
local now = tonumber(ARGV[1])
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head or tonumber(string.sub(head, 1, {DEADLINE_DIGITS})) > now then break end
  redis.call('LPOP', KEYS[1])
end
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
ENQUEUE_SHA = hashlib.sha1(ENQUEUE.encode()).hexdigest()


def _item(payload: bytes, deadline_ms: int) -> bytes:
    return b"%0*d" % (DEADLINE_DIGITS, deadline_ms) + payload


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisQueues:
    """The work-queue methods of the backend contract, mixed into both Redis backends,
    which provide `connections`, ``wire_name`` and `wake_commands`: the commands
    publishing ``wake`` on channel ``queue`` (none needing a script loaded),
    whatever they store expiring after ``ttl_ms``."""

    supports_queues = True
    connections: RedisConnections
    wire_name: Callable[[str], str]
    wake_commands: Callable[[str, bytes, int], list[tuple[Any, ...]]]

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)  # type: ignore[call-arg]  # the backend's base class
        #: The round trips of this instance's queue calls (one event loop's).
        self.queue_trips = SharedTrips(self.connections.execute)

    async def enqueue(
        self, queue: str, payload: bytes, *, capacity: int, expiry: float, wake: bytes
    ) -> bool:
        now = time.time()
        item = _item(payload, int((now + expiry) * 1000))
        key = queue_key(self.wire_name(queue))
        ttl = _ms(expiry)
        commands = (
            ("EVALSHA", ENQUEUE_SHA, 1, key, int(now * 1000), capacity, item, ttl),
            *self.wake_commands(queue, wake, ttl),
        )
        replies = await self.queue_trips.run(*commands)
        if isinstance(replies[0], NoScriptError):  # first use on this server: load it
            raise_errors(await self.queue_trips.run(("SCRIPT", "LOAD", ENQUEUE)))
            # Woken again: a receiver woken by the first wake-up may have looked already.
            replies = await self.queue_trips.run(*commands)
        added, *_ = raise_errors(replies)
        return bool(added)

    async def dequeue(self, queue: str, count: int) -> list[bytes]:
        key = queue_key(self.wire_name(queue))
        taken: list[bytes] = []
        while len(taken) < count:
            asked = count - len(taken)
            (items,) = raise_errors(await self.queue_trips.run(("LPOP", key, asked)))
            items = items or []
            now_ms = int(time.time() * 1000)
            taken += [
                item[DEADLINE_DIGITS:]
                for item in items
                if int(item[:DEADLINE_DIGITS]) > now_ms  # expired ones are dropped here
            ]
            if len(items) < asked:
                break  # the queue is empty
        return taken

    async def restore(
        self, queue: str, payloads: Sequence[bytes], *, expiry: float, wake: bytes
    ) -> None:
        deadline_ms = int((time.time() + expiry) * 1000)
        key = queue_key(self.wire_name(queue))
        items = [_item(payload, deadline_ms) for payload in reversed(payloads)]
        ttl = _ms(expiry)
        raise_errors(
            await self.queue_trips.run(
                ("LPUSH", key, *items), ("PEXPIRE", key, ttl), *self.wake_commands(queue, wake, ttl)
            )
        )
