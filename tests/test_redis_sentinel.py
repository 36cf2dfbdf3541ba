"""Both Redis backends behind Redis Sentinel: the conformance kit, a failover
(the master killed while events flow), the channel layer, and the settings checks.

The Sentinel set (a master, its replica, 3 sentinels) is private to this module
(`tests.support.redis_cluster.RedisSentinels`), started once and always stopped.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from django.core.checks import Error, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_broadcaster import Broadcast
from django_broadcaster.config import create_broadcast
from django_broadcaster.layers import BroadcastChannelLayer
from django_broadcaster.masking import mask_password
from django_broadcaster.testing import conformance

from .support.redis_cluster import SERVICE, RedisSentinels, wait_for
from .support.waiting import TIMEOUT, receive

PUBSUB = "django_broadcaster.backends.redis.RedisBackend"
STREAMS = "django_broadcaster.backends.redis.RedisStreamBackend"
PASSWORD = "master-pw"
#: The master wants a password: the one in LOCATION must reach it.
SERVICE_URL = f"redis://:{PASSWORD}@{SERVICE}/0"


@pytest.fixture(scope="module")
def sentinel_set() -> Iterator[RedisSentinels]:
    servers = RedisSentinels(password=PASSWORD)
    try:
        servers.start()
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="class")
def on_sentinels(request: pytest.FixtureRequest, sentinel_set: RedisSentinels) -> None:
    """Point the conformance class at the Sentinel set."""
    request.cls.OPTIONS = {"SENTINELS": sentinel_set.addresses}
    request.cls.servers = sentinel_set


def master_client(servers: RedisSentinels) -> aioredis.Redis:
    port = servers.current_master_port()
    return aioredis.Redis(host="127.0.0.1", port=port, password=PASSWORD, protocol=2)


@pytest.mark.usefixtures("on_sentinels")
class SentinelPubSubConformance(conformance.BackendConformance):
    BACKEND = PUBSUB
    LOCATION = SERVICE_URL
    servers: RedisSentinels

    async def break_connection(self) -> None:
        """CLIENT KILL, on the master, every connection named after this test's alias."""
        admin = master_client(self.servers)
        try:
            name = f"django-broadcaster:{self.alias}"
            ours = [c["id"] for c in await admin.client_list() if c["name"] == name]
            self.assertTrue(ours, f"no Redis connection named {name}")
            for client_id in ours:
                await admin.client_kill_filter(_id=client_id)
        finally:
            await admin.aclose()


class SentinelStreamConformance(SentinelPubSubConformance):
    BACKEND = STREAMS
    RETENTION_OPTIONS = {"MAXLEN": 5}

    async def asyncTearDown(self) -> None:
        admin = master_client(self.servers)
        try:
            keys = [key async for key in admin.scan_iter(f"{self.key_prefix}:*")]
            if keys:
                await admin.delete(*keys)
        finally:
            await admin.aclose()
        await super().asyncTearDown()


def sentinel_bus(servers: RedisSentinels, backend: str, **options: Any) -> Broadcast:
    return create_broadcast(
        "default",
        {
            "BACKEND": backend,
            "LOCATION": SERVICE_URL,
            "OPTIONS": {"SENTINELS": servers.addresses, **options},
            "KEY_PREFIX": f"s{uuid.uuid4().hex[:12]}",
        },
    )


async def replicated(servers: RedisSentinels) -> None:
    """Wait until the replica has everything the master has."""
    master = servers.current_master()
    replica = next(server for server in servers.servers() if server is not master)

    def caught_up() -> bool:
        with master.client() as m, replica.client() as r:
            offset = m.info("replication")["master_repl_offset"]
            return bool(r.info("replication")["slave_repl_offset"] >= offset)

    await asyncio.to_thread(wait_for, caught_up, "the replica did not catch up", TIMEOUT)


@pytest.mark.parametrize("backend", [PUBSUB, STREAMS], ids=["redis", "redis-stream"])
async def test_a_master_failover_is_survived(sentinel_set: RedisSentinels, backend: str) -> None:
    """The master is killed while a publisher keeps publishing: the subscriber
    carries on with the master the sentinels promote. On Streams every event the
    replica had received arrives, once and in order, and so does every event
    published after the failover."""
    bus = sentinel_bus(sentinel_set, backend, TIMEOUT=30, MAX_QUEUE=10_000)
    old_master = sentinel_set.current_master_port()
    try:
        async with bus.subscribe("busy") as sub:
            for i in range(100):
                await bus.apublish("busy", i)
            await replicated(sentinel_set)
            stop = asyncio.Event()

            async def keep_publishing() -> None:
                i = 100
                while not stop.is_set():
                    await bus.apublish("busy", i)
                    i += 1
                    await asyncio.sleep(0.005)

            publisher = asyncio.ensure_future(keep_publishing())
            try:
                await asyncio.to_thread(sentinel_set.fail_over)
                await bus.apublish("busy", "after")  # raises if not healed in TIMEOUT
            finally:
                stop.set()
                await publisher
            assert sentinel_set.current_master_port() != old_master
            got = []
            while not got or got[-1] != "after":
                got.append((await sub.get(TIMEOUT)).message)
        assert got[:100] == list(range(100))
        numbers = [n for n in got if isinstance(n, int)]
        assert numbers == sorted(set(numbers)), "repeated or reordered events"
        if backend == STREAMS:
            # The stream on the new master is what the subscriber got (ids included).
            admin = master_client(sentinel_set)
            try:
                stored = [
                    json.loads(fields[b"data"])
                    for _, fields in await admin.xrange(f"{bus.config.key_prefix}:busy")
                ]
            finally:
                await admin.aclose()
            assert got == stored
        stats = bus.stats()
        assert stats["disconnects"] >= 1
        assert stats["reconnects"] >= 1
    finally:
        await bus.aclose()


async def test_the_channel_layer_runs_on_sentinel(sentinel_set: RedisSentinels) -> None:
    """group_send and send reach consumers through a Sentinel-managed master, also
    after a failover."""
    bus = sentinel_bus(sentinel_set, PUBSUB, TIMEOUT=30)
    layer = BroadcastChannelLayer(using=bus)
    try:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        await layer.group_send("room", {"type": "chat.message", "text": "before"})
        assert (await receive(layer, channel))["text"] == "before"
        await asyncio.to_thread(sentinel_set.fail_over)
        await layer.group_send("room", {"type": "chat.message", "text": "after"})
        while (await receive(layer, channel))["text"] != "after":
            pass
        await layer.send(channel, {"type": "chat.message", "text": "direct"})
        assert (await receive(layer, channel))["text"] == "direct"
    finally:
        await layer.close()
        await bus.aclose()


# -- settings ------------------------------------------------------------------


def check_errors(entry: dict[str, Any]) -> list[str]:
    with override_settings(BROADCAST_BACKENDS={"default": entry}):
        return [m.msg for m in run_checks(tags=["django_broadcaster"]) if isinstance(m, Error)]


@pytest.mark.parametrize(
    ("sentinels", "wrong"),
    [
        ([], "[]"),
        ("127.0.0.1:26379", "'127.0.0.1:26379'"),
        ([("127.0.0.1", "26379")], "('127.0.0.1', '26379')"),
        ([("127.0.0.1", 26379, 1)], "('127.0.0.1', 26379, 1)"),
        ([("", 26379)], "('', 26379)"),
    ],
)
def test_bad_sentinels_get_one_line(sentinels: object, wrong: str) -> None:
    errors = check_errors(
        {"BACKEND": STREAMS, "LOCATION": SERVICE_URL, "OPTIONS": {"SENTINELS": sentinels}}
    )
    assert errors == [
        "BROADCAST_BACKENDS['default']: OPTIONS['SENTINELS'] must be a non-empty list of "
        f"(host, port) pairs, one per sentinel, not {wrong}"
    ]


@pytest.mark.parametrize(
    "location", ["redis://127.0.0.1:6379/0", "unix:///tmp/redis.sock", "redis:///0"]
)
def test_a_location_naming_no_service_is_refused_with_sentinels(location: str) -> None:
    entry = {
        "BACKEND": PUBSUB,
        "LOCATION": location,
        "OPTIONS": {"SENTINELS": [("127.0.0.1", 26379)]},
    }
    message = (
        f"BROADCAST_BACKENDS['default']: LOCATION {mask_password(location)!r} of RedisBackend "
        "must name the "
        "Sentinel service as redis://<service>/<db> (or rediss://) when OPTIONS['SENTINELS'] "
        "is set"
    )
    assert check_errors(entry) == [message]
    with pytest.raises(ImproperlyConfigured, match="must name the Sentinel service"):
        create_broadcast("default", entry).publish("x", 1)


def test_sentinel_kwargs_must_be_a_dict() -> None:
    errors = check_errors(
        {
            "BACKEND": PUBSUB,
            "LOCATION": SERVICE_URL,
            "OPTIONS": {"SENTINELS": [("127.0.0.1", 26379)], "SENTINEL_KWARGS": "secret"},
        }
    )
    assert errors == [
        "BROADCAST_BACKENDS['default']: OPTIONS['SENTINEL_KWARGS'] must be a dict of redis-py "
        "connection arguments, not <class 'str'>"
    ]
