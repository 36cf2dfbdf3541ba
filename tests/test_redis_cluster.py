"""`RedisBackend` on Redis Cluster (``OPTIONS["CLUSTER"]``): the conformance kit,
sharded pub/sub (where a message travels, connections per node), a failover of
the master serving a busy channel, the channel layer, and the settings checks.

The cluster (3 masters, 3 replicas) is private to this module
(`tests.support.redis_cluster.RedisCluster`), started once and always stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from django.core.checks import Error, run_checks
from django.test import override_settings
from redis.crc import key_slot

from django_broadcaster import Broadcast
from django_broadcaster.backends.redis import RedisClusterBackend, RedisStreamClusterBackend
from django_broadcaster.config import create_broadcast
from django_broadcaster.layers import BroadcastChannelLayer
from django_broadcaster.testing import conformance

from .support.redis_cluster import RedisCluster, wait_for
from .support.redis_servers import RedisServer
from .support.waiting import TIMEOUT, eventually, receive

PUBSUB = "django_broadcaster.backends.redis.RedisBackend"
PASSWORD = "cluster-pw"
STREAMS = "django_broadcaster.backends.redis.RedisStreamBackend"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    # Every node wants a password: the seed URL's must reach every node.
    servers = RedisCluster(password=PASSWORD)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="class")
def on_cluster(request: pytest.FixtureRequest, cluster: RedisCluster) -> None:
    """Point the conformance class at the cluster."""
    request.cls.LOCATION = cluster.url
    request.cls.servers = cluster


def running(cluster: RedisCluster) -> list[redis.Redis]:
    return [node.client() for node in cluster.nodes if node.process is not None]


def replicated(master: RedisServer) -> bool:
    """Whether every replica of ``master`` has everything it has."""
    with master.client() as client:
        info = client.info("replication")
    replicas = [value for value in info.values() if isinstance(value, dict)]
    return bool(replicas) and all(
        r["state"] == "online" and r["offset"] >= info["master_repl_offset"] for r in replicas
    )


def cluster_masters(cluster: RedisCluster) -> list[int]:
    with next(node for node in cluster.nodes if node.process is not None).client() as client:
        return sorted(cluster.masters(client))


def connections_named(cluster: RedisCluster, name: str) -> dict[int, list[int]]:
    """Client ids of connections named ``name``, by node port."""
    found: dict[int, list[int]] = {}
    for node in cluster.nodes:
        if node.process is None:
            continue
        with node.client() as client:
            ids = [c["id"] for c in client.client_list() if c["name"] == name]
        if ids:
            found[node.port] = ids
    return found


@pytest.mark.usefixtures("on_cluster")
class ClusterPubSubConformance(conformance.BackendConformance):
    BACKEND = PUBSUB
    OPTIONS = {"CLUSTER": True}
    servers: RedisCluster

    async def break_connection(self) -> None:
        """CLIENT KILL, on every node, each connection named after this test's alias."""
        name = f"django-broadcaster:{self.alias}"
        ours = await asyncio.to_thread(connections_named, self.servers, name)
        self.assertTrue(ours, f"no Redis connection named {name}")
        for port, ids in ours.items():
            admin = aioredis.Redis(host="127.0.0.1", port=port, password=PASSWORD, protocol=2)
            try:
                for client_id in ids:
                    await admin.client_kill_filter(_id=client_id)
            finally:
                await admin.aclose()


class ClusterStreamConformance(ClusterPubSubConformance):
    BACKEND = STREAMS
    RETENTION_OPTIONS = {"MAXLEN": 5}

    async def asyncTearDown(self) -> None:
        """Delete this test's streams from the cluster."""
        await asyncio.to_thread(drop_keys, self.servers, self.key_prefix)
        await super().asyncTearDown()


def drop_keys(cluster: RedisCluster, prefix: str) -> None:
    for client in running(cluster):
        with client:
            if client.info("replication")["role"] == "master":
                for key in list(client.scan_iter(f"{prefix}:*")):
                    client.delete(key)


def cluster_bus(cluster: RedisCluster, backend: str = PUBSUB, **options: Any) -> Broadcast:
    return create_broadcast(
        "default",
        {
            "BACKEND": backend,
            "LOCATION": cluster.url,
            "OPTIONS": {"CLUSTER": True, **options},
            "KEY_PREFIX": f"k{uuid.uuid4().hex[:12]}",
        },
    )


def channels_on_every_master(bus: Broadcast, cluster: RedisCluster, count: int) -> list[str]:
    """``count`` channel names whose wire names spread over every master."""
    names = [f"c{i}" for i in range(count)]
    owners = {cluster.master_of(f"{bus.config.key_prefix}:{name}").port for name in names}
    assert len(owners) == 3, owners
    return names


def test_cluster_true_makes_the_cluster_variants(cluster: RedisCluster) -> None:
    pubsub, streams = cluster_bus(cluster), cluster_bus(cluster, STREAMS)
    assert type(pubsub.config.backend_class(pubsub.config)) is RedisClusterBackend
    assert type(streams.config.backend_class(streams.config)) is RedisStreamClusterBackend


@pytest.mark.parametrize("backend", [PUBSUB, STREAMS], ids=["redis", "redis-stream"])
async def test_connections_grow_with_nodes_not_channels(
    cluster: RedisCluster, backend: str
) -> None:
    """200 subscribed channels on 3 masters: one command and one reading
    (SSUBSCRIBE or XREAD) connection per master, and every channel receives."""
    bus = cluster_bus(cluster, backend)
    channels = channels_on_every_master(bus, cluster, 200)
    try:
        async with bus.subscribe(*channels) as sub:
            await asyncio.gather(*(bus.apublish(channel, channel) for channel in channels))
            got = {(await sub.get(TIMEOUT)).message for _ in channels}
            assert got == set(channels)
            ours = await asyncio.to_thread(connections_named, cluster, "django-broadcaster:default")
            assert sorted(len(ids) for ids in ours.values()) == [2, 2, 2], ours
    finally:
        await bus.aclose()
        await asyncio.to_thread(drop_keys, cluster, bus.config.key_prefix)


def pubsub_counters(cluster: RedisCluster) -> dict[int, tuple[int, int]]:
    """Per node: cluster bus messages received for PUBLISH and for SPUBLISH."""
    counters = {}
    for node in cluster.nodes:
        with node.client() as client:
            info = client.cluster("info")
            counters[node.port] = (
                int(info.get("cluster_stats_messages_publish_received", 0)),
                int(info.get("cluster_stats_messages_publishshard_received", 0)),
            )
    return counters


async def test_sharded_pubsub_stays_inside_the_channels_shard(cluster: RedisCluster) -> None:
    """100 events through the bus (SPUBLISH) reach over the cluster bus only the
    replica of the channel's master; 100 classic PUBLISH reach every other node."""
    bus = cluster_bus(cluster)
    wire = f"{bus.config.key_prefix}:room"
    master = cluster.master_of(wire)
    others = {node.port for node in cluster.nodes} - {master.port}
    with master.client() as client:
        (replica,) = [
            int(r["port"]) for r in client.info("replication").values() if isinstance(r, dict)
        ]
    before = pubsub_counters(cluster)

    def grown(index: int, ports: set[int]) -> dict[int, int]:
        now = pubsub_counters(cluster)
        return {port: now[port][index] - before[port][index] for port in ports}

    try:
        async with bus.subscribe("room") as sub:
            for i in range(100):
                await bus.apublish("room", i)
            assert [(await sub.get(TIMEOUT)).message for _ in range(100)] == list(range(100))
    finally:
        await bus.aclose()
    await eventually(lambda: grown(1, {replica}) == {replica: 100})
    assert grown(1, others) == {port: 100 if port == replica else 0 for port in others}
    assert grown(0, others) == dict.fromkeys(others, 0)  # no classic PUBLISH went out
    with master.client() as client:
        for i in range(100):
            client.publish(wire, i)
    await eventually(lambda: grown(0, others) == dict.fromkeys(others, 100))


async def test_a_failover_of_a_busy_channels_master_is_survived(cluster: RedisCluster) -> None:
    """The master serving a busy channel's slot is killed while events flow: its
    replica takes over, and subscribers of that channel and of channels on other
    shards carry on."""
    bus = cluster_bus(cluster, TIMEOUT=30, MAX_QUEUE=100_000)
    busy = "busy"
    master = cluster.master_of(f"{bus.config.key_prefix}:{busy}")
    others = [
        name
        for name in (f"o{i}" for i in range(50))
        if cluster.master_of(f"{bus.config.key_prefix}:{name}") is not master
    ][:2]
    try:
        async with bus.subscribe(busy) as sub, bus.subscribe(*others) as other_sub:
            await bus.apublish(busy, "before")
            assert (await sub.get(TIMEOUT)).message == "before"
            stop = asyncio.Event()

            async def keep_publishing() -> None:
                while not stop.is_set():
                    await bus.apublish(busy, "meanwhile")
                    await asyncio.sleep(0.005)

            publisher = asyncio.ensure_future(keep_publishing())
            try:
                # The old master stays down until the end: nothing may depend on it.
                await asyncio.to_thread(cluster.fail_over, master, False)
            finally:
                stop.set()
                await publisher
            assert cluster.master_of(f"{bus.config.key_prefix}:{busy}") is not master
            await bus.apublish(busy, "after")
            while (await sub.get(TIMEOUT)).message != "after":
                pass
            for name in others:
                await bus.apublish(name, name)
            assert {(await other_sub.get(TIMEOUT)).message for _ in others} == set(others)
        assert bus.stats()["reconnects"] >= 1
    finally:
        await bus.aclose()
        if master.process is None:
            await asyncio.to_thread(cluster.revive, master)


async def test_streams_lose_nothing_the_replica_had_across_a_failover(
    cluster: RedisCluster,
) -> None:
    """The master of a busy stream is killed while events are appended: every event
    its replica had received arrives once and in order, and so does everything
    published after the failover; history reads the promoted replica's stream."""
    bus = cluster_bus(cluster, STREAMS, TIMEOUT=30, MAX_QUEUE=100_000)
    wire = f"{bus.config.key_prefix}:busy"
    master = cluster.master_of(wire)
    try:
        async with bus.subscribe("busy") as sub:
            for i in range(100):
                await bus.apublish("busy", i)
            await asyncio.to_thread(wait_for, lambda: replicated(master), "replica behind")
            stop = asyncio.Event()

            async def keep_publishing() -> None:
                i = 100
                while not stop.is_set():
                    await bus.apublish("busy", i)
                    i += 1
                    await asyncio.sleep(0.005)

            publisher = asyncio.ensure_future(keep_publishing())
            try:
                await asyncio.to_thread(cluster.fail_over, master, False)
            finally:
                stop.set()
                await publisher
            await bus.apublish("busy", "after")
            got = [await sub.get(TIMEOUT)]
            while got[-1].message != "after":
                got.append(await sub.get(TIMEOUT))
        messages = [event.message for event in got]
        assert messages[:100] == list(range(100))
        numbers = [n for n in messages if isinstance(n, int)]
        assert numbers == sorted(set(numbers)), "repeated or reordered events"
        history = await bus.ahistory("busy", limit=None)
        assert [(e.id, e.message) for e in history] == [(e.id, e.message) for e in got]
        assert bus.stats()["reconnects"] >= 1
    finally:
        await bus.aclose()
        if master.process is None:
            await asyncio.to_thread(cluster.revive, master)
        await asyncio.to_thread(drop_keys, cluster, bus.config.key_prefix)


async def test_the_channel_layer_runs_on_the_cluster(cluster: RedisCluster) -> None:
    bus = cluster_bus(cluster)
    layer = BroadcastChannelLayer(using=bus)
    try:
        channels = [await layer.new_channel() for _ in range(6)]
        for channel in channels:
            await layer.group_add("room", channel)
        await layer.group_send("room", {"type": "chat.message", "text": "hello"})
        for channel in channels:
            assert (await receive(layer, channel))["text"] == "hello"
        await layer.send(channels[0], {"type": "chat.message", "text": "direct"})
        assert (await receive(layer, channels[0]))["text"] == "direct"
    finally:
        await layer.close()
        await bus.aclose()


# -- settings ------------------------------------------------------------------


def check_errors(entry: dict[str, Any]) -> list[str]:
    with override_settings(BROADCAST_BACKENDS={"default": entry}):
        return [m.msg for m in run_checks(tags=["django_broadcaster"]) if isinstance(m, Error)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"CLUSTER": "yes"}, "OPTIONS['CLUSTER'] must be True or False, not 'yes'"),
        (
            {"CLUSTER": True, "SENTINELS": [("127.0.0.1", 26379)]},
            "OPTIONS['CLUSTER'] must be False when OPTIONS['SENTINELS'] is set (a cluster has "
            "no sentinels), not True",
        ),
    ],
)
def test_bad_cluster_options_get_one_line(options: dict[str, Any], message: str) -> None:
    entry = {"BACKEND": PUBSUB, "LOCATION": "redis://127.0.0.1:7000/0", "OPTIONS": options}
    assert check_errors(entry) == [f"BROADCAST_BACKENDS['default']: {message}"]


@pytest.mark.parametrize("location", ["redis://127.0.0.1:7000/1", "unix:///tmp/redis.sock"])
def test_a_cluster_location_must_be_a_node_on_database_0(location: str) -> None:
    errors = check_errors({"BACKEND": PUBSUB, "LOCATION": location, "OPTIONS": {"CLUSTER": True}})
    assert len(errors) == 1, errors
    assert "must be a redis:// or rediss:// URL of a cluster node, database 0" in errors[0]


async def test_location_may_list_several_seeds(cluster: RedisCluster) -> None:
    """A list of node URLs: a seed that is down is skipped."""
    down = f"redis://:{PASSWORD}@127.0.0.1:1/0"
    bus = create_broadcast(
        "default",
        {
            "BACKEND": PUBSUB,
            "LOCATION": [down, cluster.url],
            "OPTIONS": {"CLUSTER": True},
            "KEY_PREFIX": f"k{uuid.uuid4().hex[:12]}",
        },
    )
    try:
        async with bus.subscribe("seeded") as sub:
            await bus.apublish("seeded", "hello")
            assert (await sub.get(TIMEOUT)).message == "hello"
    finally:
        await bus.aclose()


def test_several_urls_need_cluster_and_never_show_passwords() -> None:
    urls = ["redis://:pw-one@127.0.0.1:7000/0", "redis://:pw-two@127.0.0.1:7001/0"]
    errors = check_errors({"BACKEND": PUBSUB, "LOCATION": urls})
    assert errors == [
        "BROADCAST_BACKENDS['default']: LOCATION of RedisBackend lists several URLs "
        "(redis://:***@127.0.0.1:7000/0 redis://:***@127.0.0.1:7001/0): only a Redis Cluster "
        "takes more than one"
    ]
    bus = create_broadcast(
        "default", {"BACKEND": PUBSUB, "LOCATION": urls, "OPTIONS": {"CLUSTER": True}}
    )
    shown = repr(bus.config)
    assert "pw-one" not in shown and "pw-two" not in shown, shown
    bad = ["redis://:pw-one@127.0.0.1:7000/0", 7]
    (error,) = check_errors({"BACKEND": PUBSUB, "LOCATION": bad, "OPTIONS": {"CLUSTER": True}})
    assert "must be a string (or a list of URLs without spaces)" in error
    assert "pw-one" not in error


def same_slot_channel(prefix: str, slot: int) -> str:
    """A channel name whose wire name hashes to ``slot``."""
    return next(f"x{i}" for i in range(10**6) if key_slot(f"{prefix}:x{i}".encode()) == slot)


@pytest.mark.parametrize("backend", [PUBSUB, STREAMS], ids=["redis", "redis-stream"])
async def test_a_channel_whose_slot_moves_keeps_flowing(
    cluster: RedisCluster, backend: str
) -> None:
    """The slot of a subscribed channel moves to another master (resharding): while
    it migrates, publishing still reaches the subscriber (a new stream in that
    slot is created on the target after ASK); once it moved, Redis ends the
    subscription, the backend subscribes on the new owner and events flow again."""
    bus = cluster_bus(cluster, backend, TIMEOUT=30)
    prefix = bus.config.key_prefix
    wire = f"{prefix}:moving"
    slot = key_slot(wire.encode())
    source = cluster.master_of(wire)
    target = next(cluster.node(port) for port in cluster_masters(cluster) if port != source.port)
    fresh = same_slot_channel(prefix, slot)
    moving = False
    try:
        async with bus.subscribe("moving") as sub, bus.subscribe(fresh) as fresh_sub:
            await bus.apublish("moving", "before")
            assert (await sub.get(TIMEOUT)).message == "before"
            await asyncio.to_thread(cluster.start_moving, slot, source, target)
            moving = True
            await bus.apublish("moving", "migrating")
            assert (await sub.get(TIMEOUT)).message == "migrating"
            if backend == STREAMS:
                await bus.apublish(fresh, "created on the target")
                with target.client() as client:  # ASK was followed: the stream is there
                    count = client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
                    assert count == 1
                assert (await fresh_sub.get(TIMEOUT)).message == "created on the target"
            await asyncio.to_thread(cluster.finish_moving, slot, source, target)
            moving = False
            assert cluster.master_of(wire) is target
            for attempt in range(100):  # pub/sub loses what is sent while it resubscribes
                await bus.apublish("moving", f"moved {attempt}")
                with contextlib.suppress(asyncio.TimeoutError):
                    event = await sub.get(0.2)
                    while event.message == "migrating":
                        event = await sub.get(0.2)
                    break
            assert event.message.startswith("moved")
            assert bus.stats()["reconnects"] >= 1  # Redis ended the moved subscription
            if backend == STREAMS:
                history = [e.message for e in await bus.ahistory("moving", limit=None)]
                assert history[:2] == ["before", "migrating"]
    finally:
        await bus.aclose()
        if moving:  # leave the cluster whole for the next tests
            await asyncio.to_thread(cluster.finish_moving, slot, source, target)
        await asyncio.to_thread(drop_keys, cluster, prefix)


async def test_a_silent_shard_link_is_probed_and_renewed(cluster: RedisCluster) -> None:
    """The channel's master stops answering for a while (CLIENT PAUSE, as a link
    gone dark would look): the SSUBSCRIBE connection's PING gets no reply within
    LIVENESS_INTERVAL, the backend reconnects, and events flow again."""
    bus = cluster_bus(cluster, LIVENESS_INTERVAL=0.2, TIMEOUT=30)
    master = cluster.master_of(f"{bus.config.key_prefix}:quiet")
    try:
        async with bus.subscribe("quiet") as sub:
            await bus.apublish("quiet", "before")
            assert (await sub.get(TIMEOUT)).message == "before"
            with master.client() as client:
                client.execute_command("CLIENT", "PAUSE", 1500, "ALL")
            await eventually(lambda: bus.stats()["disconnects"] >= 1)
            for attempt in range(100):  # pub/sub loses what is sent while it resubscribes
                await bus.apublish("quiet", attempt)
                with contextlib.suppress(asyncio.TimeoutError):
                    assert isinstance((await sub.get(0.2)).message, int)
                    break
            assert bus.stats()["reconnects"] >= 1
    finally:
        await bus.aclose()


async def test_streams_catch_up_on_an_event_added_outside_the_bus(cluster: RedisCluster) -> None:
    """An XADD by another program (no wake-up) still reaches a subscriber: every
    stream is read every few seconds."""
    bus = cluster_bus(cluster, STREAMS)
    wire = f"{bus.config.key_prefix}:outside"
    try:
        async with bus.subscribe("outside") as sub:
            with cluster.master_of(wire).client() as client:
                entry_id = client.xadd(wire, {"data": json.dumps("from elsewhere")}).decode()
            event = await sub.get(TIMEOUT)
            assert (event.id, event.message) == (entry_id, "from elsewhere")
    finally:
        await bus.aclose()
        await asyncio.to_thread(drop_keys, cluster, bus.config.key_prefix)
