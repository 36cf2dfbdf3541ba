"""`RedisStreamClusterBackend`: `RedisStreamBackend` on a Redis Cluster.

Chosen by ``OPTIONS["CLUSTER"]`` on ``RedisStreamBackend``. Each channel is one
stream, on the master serving its key's slot; publishing, history, ``since=``
and retention work as on one server, each command sent to that master (see
``cluster``).

Reading cannot be one blocking ``XREAD`` per master: Redis Cluster refuses a
command whose keys lie in different slots (``CROSSSLOT``), so one ``XREAD``
would need a connection per slot. Instead every append is followed by an empty
``SPUBLISH`` on the stream's own name (same slot, same master, after the
append), and the reader keeps ``SSUBSCRIBE`` on one connection per master in use
(see ``shards``). A wake-up marks its stream due; one task then reads every due
stream from its last id with non-blocking ``XREAD`` (one per slot, pipelined per
master on the command connections), and reads every stream every
`CATCH_UP_SECONDS` in case a wake-up was missed (an ``XADD`` made outside the
bus). Subscribing reads from the baseline once the ``SSUBSCRIBE`` is confirmed,
so nothing appended in between is missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from redis.exceptions import TryAgainError

from ..base import BackendConfig, RawEvent
from .cluster import OnCluster, refusal, slot_of
from .connection import ConnectionClosed
from .publishing import FIELD
from .shards import ShardSubscriptions
from .stream_wakes import IDLE_CHECK
from .streams import CATCH_UP_SECONDS, XREAD_COUNT, RedisStreamBackend, log_foreign_key
from .wire import text


def payload_of(fields: Any) -> bytes:
    """The payload field of a raw stream entry (empty when the entry has none)."""
    for index in range(0, len(fields or ()) - 1, 2):
        if fields[index] == FIELD:
            value = fields[index + 1]
            return value if isinstance(value, bytes) else b""
    return b""


class RedisStreamClusterBackend(OnCluster, RedisStreamBackend):
    """`RedisStreamBackend` on Redis Cluster: each stream on its slot's master, one
    ``SSUBSCRIBE`` connection per master in use for the wake-ups."""

    cluster_of = RedisStreamBackend

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        owner = f"{type(self).__name__} {self.alias!r}"
        # Probed like the single-server reader's wake-up connection.
        self._shards = ShardSubscriptions(self.cluster, owner, self._woken, self._fail, IDLE_CHECK)
        self._positions: dict[str, str] = {}  # subscribed stream keys -> last id read
        self._keys: dict[str, str] = {}  # subscribed stream keys -> channel names
        self._due: set[str] = set()
        self._split: set[int] = set()  # slots whose streams are read one by one
        self._wakeup = asyncio.Event()
        self._failure: BaseException | None = None
        self._caught_up = 0.0  # loop time every stream was last marked due

    async def connect(self) -> None:
        self._failure = None
        await self.connections.connect()

    async def close(self) -> None:
        self._positions.clear()
        self._keys.clear()
        self._due.clear()
        self._split.clear()
        closed = ConnectionClosed(f"{self.alias!r} was closed")
        self._fail(closed)
        await self.connections.close(*self._shards.close(closed))

    def _woken(self, name: bytes, payload: bytes) -> None:
        key = name.decode()
        if key in self._positions:
            self._due.add(key)
            self._wakeup.set()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._wakeup.set()

    def wake_commands(self, queue: str, wake: bytes, ttl_ms: int) -> list[tuple[Any, ...]]:
        # The readers listen on the stream's own name, in its shard: no classic PUBLISH.
        commands = super().wake_commands(queue, wake, ttl_ms)
        kept = [command for command in commands if command[0] != "PUBLISH"]
        return [*kept, ("SPUBLISH", self.wire_name(queue), b"")]

    async def subscribe(self, positions: Mapping[str, str | None]) -> Mapping[str, str]:
        keys, starts, unknown = await self.starting_points(positions)
        self._positions.update(starts)
        self._keys.update(keys)
        await self._shards.subscribe([key.encode() for key in keys])
        self._due.update(keys)  # what came before the SSUBSCRIBE took effect
        self._wakeup.set()
        # The baselines: the hub resumes these channels from there after a reconnect.
        return {keys[key]: starts[key] for key in unknown}

    async def unsubscribe(self, channels: Collection[str]) -> None:
        keys = [self.wire_name(channel) for channel in channels]
        for key in keys:
            self._positions.pop(key, None)
            self._keys.pop(key, None)
            self._due.discard(key)
        await self._shards.unsubscribe([key.encode() for key in keys])

    async def receive(self) -> Sequence[RawEvent]:
        loop = asyncio.get_running_loop()
        while True:
            if self._failure is not None:
                raise self._failure
            if loop.time() - self._caught_up >= CATCH_UP_SECONDS:
                self._due.update(self._positions)
                self._caught_up = loop.time()
            if self._due:
                events = await self._read_due()
                if events:
                    return events
                continue
            self._wakeup.clear()
            # A timer, not asyncio.wait_for (which may swallow a cancellation on 3.10/3.11).
            timer = loop.call_later(CATCH_UP_SECONDS, self._wakeup.set)
            try:
                await self._wakeup.wait()
            finally:
                timer.cancel()

    async def _read_due(self) -> list[RawEvent]:
        """Read every due stream after its last id: one XREAD per slot."""
        due, self._due = self._due, set()
        by_slot: dict[int | str, list[str]] = {}
        for key in due:
            if key in self._positions:
                slot = slot_of(key)
                # A migrating slot's streams may lie on two masters: one XREAD each.
                by_slot.setdefault(key if slot in self._split else slot, []).append(key)
        groups = list(by_slot.values())
        commands = [
            ("XREAD", "COUNT", XREAD_COUNT, "STREAMS", *keys, *[self._positions[k] for k in keys])
            for keys in groups
        ]
        replies = await self.connections.execute(*commands)
        order = self.id_order
        events: list[RawEvent] = []
        for keys, reply in zip(groups, replies, strict=True):
            if isinstance(reply, Exception):
                if refusal(reply, TryAgainError, "TRYAGAIN"):  # the slot is migrating
                    self._split.add(slot_of(keys[0]))
                    self._due.update(keys)
                    continue
                if "WRONGTYPE" not in str(reply):
                    raise ConnectionClosed(f"{self.alias!r}: XREAD answered {reply}")
                await self._drop_foreign(keys)
                self._due.update(key for key in keys if key in self._positions)
                continue
            for key_bytes, entries in reply or ():
                key = text(key_bytes)
                last, channel = self._positions.get(key), self._keys.get(key)
                if last is None or channel is None:
                    continue  # unsubscribed meanwhile
                after = order(last)
                for entry_id_bytes, fields in entries:
                    entry_id = text(entry_id_bytes)
                    if order(entry_id) > after:  # a re-subscription may start later
                        events.append(RawEvent(channel, payload_of(fields), entry_id))
                        last = entry_id
                self._positions[key] = last
                if len(entries) >= XREAD_COUNT:
                    self._due.add(key)  # more to read
        return events

    async def _drop_foreign(self, keys: list[str]) -> None:
        """Stop reading keys holding something else than a stream; log each."""
        replies = await self.connections.execute(*[("TYPE", key) for key in keys])
        for key, kind in zip(keys, replies, strict=True):
            if isinstance(kind, Exception) or text(kind) in ("stream", "none"):
                continue
            self._positions.pop(key, None)
            log_foreign_key(self.alias, self._keys.pop(key, key), key, text(kind))
