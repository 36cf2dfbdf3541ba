"""python -m benchmarks.cluster: a private Redis Cluster (3 masters, 3 replicas) on
loopback for the "-cluster" rows, and where its pub/sub traffic goes.

Starts the cluster of the tests (``tests/support/redis_cluster.py``), prints the
``BENCH_REDIS_CLUSTER_URL`` to export, then measures, per node, the cluster-bus
messages that 1,000 events on one channel cause: sent by the bus
(``SPUBLISH``), then by a classic ``PUBLISH`` (``CLUSTER INFO`` counters
``cluster_stats_messages_publishshard_received`` and
``cluster_stats_messages_publish_received``). With ``--hold`` it keeps the
cluster up until Ctrl-C, for ``python -m benchmarks --only
django-broadcaster:redis-cluster``.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import redis

from tests.support.redis_cluster import RedisCluster

EVENTS = 1000


def counters(cluster: RedisCluster) -> dict[int, tuple[int, int]]:
    """Per node port: (publish messages, publishshard messages) received over the bus."""
    found = {}
    for node in cluster.nodes:
        with node.client() as client:
            info = client.cluster("info")
        found[node.port] = (
            int(info.get("cluster_stats_messages_publish_received", 0)),
            int(info.get("cluster_stats_messages_publishshard_received", 0)),
        )
    return found


async def publish_through_the_bus(url: str, channel: str) -> None:
    import django
    from django.conf import settings

    settings.configure(INSTALLED_APPS=["django_broadcaster"], USE_TZ=True)
    django.setup()
    from django_broadcaster.config import create_broadcast

    bus = create_broadcast(
        "default",
        {
            "BACKEND": "django_broadcaster.backends.redis.RedisBackend",
            "LOCATION": url,
            "OPTIONS": {"CLUSTER": True},
            "KEY_PREFIX": "measure",
        },
    )
    try:
        for i in range(EVENTS):
            await bus.apublish(channel, i)
    finally:
        await bus.aclose()


def settle(cluster: RedisCluster, before: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """The counters' growth since ``before``, once they stop moving."""
    last: dict[int, tuple[int, int]] = {}
    while True:
        time.sleep(0.5)
        now = counters(cluster)
        grown = {p: (now[p][0] - before[p][0], now[p][1] - before[p][1]) for p in now}
        if grown == last:
            return grown
        last = grown


def main() -> None:
    cluster = RedisCluster()
    try:
        cluster.start()
        print(f"export BENCH_REDIS_CLUSTER_URL={cluster.url}")
        channel = f"room-{uuid.uuid4().hex[:6]}"
        wire = f"measure:{channel}"
        master = cluster.master_of(wire)
        with master.client() as client:
            replicas = {
                int(r["port"]) for r in client.info("replication").values() if isinstance(r, dict)
            }
        print(f"channel {wire!r}: master {master.port}, its replica {sorted(replicas)}")
        before = counters(cluster)
        asyncio.run(publish_through_the_bus(cluster.url, channel))
        sharded = settle(cluster, before)
        between = counters(cluster)
        with master.client() as client:
            for i in range(EVENTS):
                client.publish(wire, i)
        classic = settle(cluster, between)
        print(f"{'node':>6} {'role':>16} {'bus (SPUBLISH)':>16} {'classic PUBLISH':>16}")
        for node in cluster.nodes:
            if node is master:
                kind = "channel's master"
            else:
                kind = "its replica" if node.port in replicas else "other shard"
            print(
                f"{node.port:>6} {kind:>16} {sharded[node.port][1]:>16} {classic[node.port][0]:>16}"
            )
        if "--hold" in sys.argv:
            print("cluster up; Ctrl-C to stop it")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    except redis.RedisError as exc:
        sys.exit(f"cluster measurement failed: {exc}")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
