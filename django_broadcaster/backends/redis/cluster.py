"""Redis Cluster: the slot map, and one backend instance's connections to its nodes.

With ``OPTIONS["CLUSTER"]``, ``LOCATION`` is a seed node or a list of them (which
arrives space-separated); `ClusterConnections` asks the nodes it saw before, then
the seeds, for the slot map (``CLUSTER SLOTS``) at every ``connect()``, so the
reconnect after a failover finds the promoted replicas.
Each master the process talks to gets a `RedisConnections` of its own, opened at
its first command: connections grow with the nodes, not with the channels.

`ClusterConnections.execute` sends every command to the master of its key's
slot, one round trip per node, the nodes in parallel, and follows ``MOVED``
(refreshing the map) and ``ASK`` (``ASKING`` first) a few times; ``SCRIPT``
commands go to every master. A node's
connection failing, or a cluster answering ``CLUSTERDOWN``, raises one of the
backends' ``connection_errors``: the hub reconnects, as after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisError,
    ResponseError,
)

from .connection import ConnectionClosed, RedisConnections, discard

#: Hash slots of a Redis Cluster.
SLOTS = 16384
#: Redirections (MOVED, ASK) followed for one command before its error reply is returned.
REDIRECTIONS = 5

Address = tuple[str, int]


class ClusterDown(ConnectionClosed):
    """The cluster refuses commands (``CLUSTERDOWN``: a failover under way); retried
    like a lost connection."""


def key_of(command: Sequence[Any]) -> Any:
    """The key (or shard channel) a command of the backends works on."""
    name = str(command[0]).upper()
    if name in ("EVAL", "EVALSHA"):
        return command[3]  # EVAL script numkeys key ...
    if name == "XINFO":
        return command[2]  # XINFO STREAM key
    if name == "XREAD":
        return command[list(command).index("STREAMS") + 1]  # XREAD ... STREAMS key ...
    return command[1]


def slot_of(key: str | bytes) -> int:
    """The hash slot of ``key`` (a ``{hash tag}`` counts, as Redis counts it)."""
    return int(key_slot(key.encode() if isinstance(key, str) else key))


def refusal(reply: Any, kind: type[ResponseError], prefix: str) -> bool:
    """Whether ``reply`` is the error reply ``prefix`` (``CLUSTERDOWN``, ``TRYAGAIN``...):
    redis-py parses it into ``kind`` and drops the prefix, or keeps the prefix in
    a plain `ResponseError`."""
    return isinstance(reply, kind) or (
        isinstance(reply, ResponseError) and str(reply).startswith(prefix + " ")
    )


def redirection(reply: Any) -> tuple[str, Address] | None:
    """``("MOVED" | "ASK", (host, port))`` for a redirection error reply, else ``None``."""
    for kind, prefix in ((MovedError, "MOVED"), (AskError, "ASK")):
        if refusal(reply, kind, prefix):
            # "[MOVED ]3999 127.0.0.1:6381"
            host, _, port = str(reply).split()[-1].rpartition(":")
            return prefix, (host, int(port))
    return None


def cluster_down(reply: Any) -> bool:
    """Whether ``reply`` is ``CLUSTERDOWN`` (a failover under way)."""
    return refusal(reply, ClusterDownError, "CLUSTERDOWN")


class ClusterConnections(RedisConnections):
    """One backend instance's connections to a Redis Cluster: the slot map and a
    `RedisConnections` per master node in use (`node`)."""

    def __init__(self, owner: str, location: str, kwargs: Mapping[str, Any]) -> None:
        seeds = location.split()  # one URL, or several separated by spaces
        super().__init__(owner, seeds[0], kwargs)
        self._name = owner
        self._seed = seeds[0]  # its user, password and TLS settings serve every node
        self._node_kwargs = dict(kwargs)
        self._seeds: list[Address] = []
        for url in seeds:
            parts = urlsplit(url)
            self._seeds.append((parts.hostname or "127.0.0.1", parts.port or 6379))
        self._slots: list[Address | None] = [None] * SLOTS
        self._nodes: dict[Address, RedisConnections] = {}
        self._nodes_lock = asyncio.Lock()
        self._connected = False

    @property
    def is_open(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        """Read the slot map from a seed (or a node seen before)."""
        await self.refresh()
        self._connected = True

    async def close(self, *readers: Any) -> None:
        """Close ``readers``, then every node's connections."""
        self._connected = False
        nodes, self._nodes = self._nodes, {}
        for reader in readers:
            await discard(reader)
        for node in nodes.values():
            await node.close()

    async def refresh(self) -> None:
        """Ask the nodes seen so far, then the seeds, for the slot map; the first answer wins."""
        known = [address for address in self._slots if address is not None]
        candidates = list(dict.fromkeys([*self._nodes, *known, *self._seeds]))
        failures = []
        for address in candidates:
            try:
                reply = await self._ask(address, ("CLUSTER", "SLOTS"))
            except (RedisError, OSError) as exc:
                failures.append(f"{address[0]}:{address[1]}: {exc}")
                continue
            self._slots = slot_map(reply, address)
            return
        raise ConnectionClosed(
            f"{self._name}: no cluster node answered CLUSTER SLOTS ({'; '.join(failures)})"
        )

    async def _ask(self, address: Address, command: tuple[Any, ...]) -> Any:
        node = self._nodes.get(address)
        if node is not None and node.is_open:
            (reply,) = await node.execute(command)
        else:
            probe = RedisConnections(self._name, self._seed, self._node_kwargs, address=address)
            try:
                await probe.connect()
                (reply,) = await probe.execute(command)
            finally:
                await probe.close()
        if isinstance(reply, Exception):
            raise reply
        return reply

    def owner_of(self, key: str | bytes) -> Address:
        """The master serving ``key``'s slot, as the slot map says."""
        slot = slot_of(key)
        address = self._slots[slot]
        if address is None:
            raise ClusterDown(f"{self._name}: no cluster node serves slot {slot}")
        return address

    async def node(self, address: Address) -> RedisConnections:
        """The connections to the node at ``address``, opened at first use."""
        node = self._nodes.get(address)
        if node is not None:
            return node
        async with self._nodes_lock:
            node = self._nodes.get(address)
            if node is None:
                if not self._connected:
                    raise ConnectionClosed(f"{self._name} is not connected")
                node = RedisConnections(self._name, self._seed, self._node_kwargs, address=address)
                await node.connect()
                self._nodes[address] = node
            return node

    async def execute(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send each command to the master of its key's slot (one round trip per node,
        the nodes in parallel) and return the replies in order, following
        redirections; an error reply comes back as a `ResponseError` instance."""
        if not self._connected:
            raise ConnectionClosed(f"{self._name} is not connected")
        replies: list[Any] = [None] * len(commands)
        todo: dict[int, Address] = {}
        for index, command in enumerate(commands):
            if str(command[0]).upper() == "SCRIPT":
                replies[index] = await self._on_every_master(command)
            else:
                todo[index] = self.owner_of(key_of(command))
        asking: set[int] = set()
        for _ in range(REDIRECTIONS):
            groups: dict[Address, list[int]] = {}
            for index, address in todo.items():
                groups.setdefault(address, []).append(index)
            results = await asyncio.gather(
                *(
                    self._on_node(address, [commands[i] for i in indexes], indexes, asking)
                    for address, indexes in groups.items()
                ),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            todo, asking, moved = {}, set(), False
            for indexes, node_replies in zip(groups.values(), results, strict=True):
                assert not isinstance(node_replies, BaseException)
                for index, reply in zip(indexes, node_replies, strict=True):
                    replies[index] = reply
                    if cluster_down(reply):
                        raise ClusterDown(f"{self._name}: {reply}")
                    target = redirection(reply)
                    if target is not None:
                        kind, todo[index] = target
                        if kind == "ASK":
                            asking.add(index)
                        else:
                            moved = True
            if moved:
                await self.refresh()
            if not todo:
                break
        return replies

    async def _on_every_master(self, command: tuple[Any, ...]) -> Any:
        """Run a keyless command (``SCRIPT LOAD``) on every master; the first error
        reply, or the last reply."""
        reply: Any = None
        for address in dict.fromkeys(a for a in self._slots if a is not None):
            (reply,) = await (await self.node(address)).execute(command)
            if isinstance(reply, Exception):
                return reply
        return reply

    async def _on_node(
        self,
        address: Address,
        commands: list[tuple[Any, ...]],
        indexes: list[int],
        asking: set[int],
    ) -> list[Any]:
        node = await self.node(address)
        if not asking.intersection(indexes):
            return await node.execute(*commands)
        # ASK: the target serves the key only right after ASKING, on the same connection.
        sent: list[tuple[Any, ...]] = []
        for index, command in zip(indexes, commands, strict=True):
            if index in asking:
                sent.append(("ASKING",))
            sent.append(command)
        replies = await node.execute(*sent)
        return [
            reply for command, reply in zip(sent, replies, strict=True) if command != ("ASKING",)
        ]

    async def pooled_command(self, *args: Any) -> Any:
        """Run one command on a pooled connection of its key's master (a history
        read); a redirection is followed through `execute`."""
        if not self._connected:
            raise ConnectionClosed(f"{self._name} is not connected")
        node = await self.node(self.owner_of(key_of(args)))
        try:
            return await node.pooled_command(*args)
        except ResponseError as exc:
            if redirection(exc) is None:
                raise
        (reply,) = await self.execute(args)
        if isinstance(reply, Exception):
            raise reply
        return reply


def slot_map(reply: Any, asked: Address) -> list[Address | None]:
    """The master of every slot from a ``CLUSTER SLOTS`` reply (an empty host is
    the node that was asked)."""
    slots: list[Address | None] = [None] * SLOTS
    for start, end, master, *_ in reply:
        host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
        address = (host if host and host != "?" else asked[0], int(master[1]))
        for slot in range(int(start), int(end) + 1):
            slots[slot] = address
    return slots


class OnCluster:
    """Mixed into both cluster backends: their connections are `ClusterConnections`."""

    location: str
    connections: RedisConnections

    def new_connections(self, owner: str, kwargs: Mapping[str, Any]) -> RedisConnections:
        return ClusterConnections(owner, self.location, kwargs)

    @property
    def cluster(self) -> ClusterConnections:
        """`connections`, as the cluster connections they are."""
        assert isinstance(self.connections, ClusterConnections)
        return self.connections
