"""Redis-specific behaviour of RedisBackend (pub/sub) and RedisStreamBackend.

The conformance kit (tests/test_backend_conformance.py) covers the shared
contract on the Redis at ``settings.REDIS_URL``. These tests add what only Redis
has: two OS processes, restarts, raw junk on the wire, connection counts,
passwords, ACLs.
Tests that stop or reconfigure Redis start their own ``redis-server`` on a free
loopback port (`tests.support.redis_servers.RedisServer`); nothing is mocked or skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from django_broadcaster import Broadcast
from django_broadcaster.backends.base import BackendConfig, BaseBackend
from django_broadcaster.backends.redis import RedisBackend, RedisStreamBackend
from django_broadcaster.config import create_broadcast
from django_broadcaster.exceptions import BackendUnavailable, ConfigError

from .support.backends import CONFORMANCE_BACKENDS, REDIS_URL, make_bus
from .support.redis_servers import RedisServer

REDIS_BACKENDS = ["redis", "redis-stream"]
ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 10

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def redis_server() -> Iterator[Callable[..., RedisServer]]:
    """Start private redis-servers: ``redis_server(*args, persistent=, password=)``."""
    servers: list[RedisServer] = []

    def start(*args: str, **kwargs: Any) -> RedisServer:
        server = RedisServer(*args, **kwargs)
        servers.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.cleanup()


@pytest.fixture(params=REDIS_BACKENDS)
def name(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
async def admin() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL, protocol=2)
    yield client
    await client.connection_pool.disconnect()  # (aclose() is redis-py >= 5.0.1)


def wire(bus: Broadcast, channel: str) -> str:
    return f"{bus.config.key_prefix}:{channel}"


async def closing(bus: Broadcast) -> None:
    await bus.aclose()
    await asyncio.to_thread(bus.close)  # the bridge loop's hub (sync publish)
    if bus.config.location == REDIS_URL:
        await drop_keys(bus.config.key_prefix)


async def drop_keys(prefix: str) -> None:
    """Delete a test's streams from the shared Redis."""
    client = aioredis.Redis.from_url(REDIS_URL, protocol=2)
    try:
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.connection_pool.disconnect()


async def reconnected(bus: Broadcast, count: int = 1) -> None:
    for _ in range(1000):
        if bus.stats()["reconnects"] >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the hub did not reconnect within 10 s")


def backend_of(name: str, location: str = REDIS_URL, **options: Any) -> BaseBackend:
    cls = RedisBackend if name == "redis" else RedisStreamBackend
    merged = {**cls.default_options, **options}
    return cls(BackendConfig("test", cls, location, merged, f"t{uuid.uuid4().hex[:12]}"))


# -- two OS processes ----------------------------------------------------------


async def test_two_processes_10000_events_in_order(name: str) -> None:
    """One process publishes 10,000 events, another receives all of them in order,
    then exits promptly although it returns with its subscription still open."""
    count = 10_000
    entry = CONFORMANCE_BACKENDS[name]
    prefix = f"t{uuid.uuid4().hex[:12]}"
    args = [str(entry["BACKEND"]), str(entry["LOCATION"]), prefix, str(count)]
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.support.settings", "PYTHONPATH": path}

    async def peer(role: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.redis_peer",
            role,
            *args,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
        )

    subscriber = await peer("subscribe")
    publisher = None
    try:
        assert subscriber.stdout is not None
        line = await asyncio.wait_for(subscriber.stdout.readline(), 60)
        assert line.strip() == b"ready"
        publisher = await peer("publish")
        published, _ = await asyncio.wait_for(publisher.communicate(), 120)
        assert json.loads(published) == {"published": count}
        assert publisher.returncode == 0
        result = json.loads(await asyncio.wait_for(subscriber.stdout.readline(), 120))
        done = time.monotonic()
        assert result["received"] == count
        assert result["in_order"] is True
        assert result["stats"]["undecodable"] == 0
        # Returning from asyncio.run() with the reader still reading must not hang.
        assert await asyncio.wait_for(subscriber.wait(), 10) == 0
        assert time.monotonic() - done < 5
    finally:
        for process in (subscriber, publisher):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
        await drop_keys(prefix)


# -- restarts --------------------------------------------------------------------


async def test_streams_lose_and_repeat_nothing_across_a_restart(
    redis_server: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Redis (with its append-only file, as in production) restarts while events
    flow: the subscriber gets exactly what the stream holds, once, in order."""
    server = redis_server(persistent=True)
    bus = make_bus(
        "redis-stream", LOCATION=server.url, OPTIONS={"TIMEOUT": 20, "MAX_QUEUE": 10_000}
    )
    acknowledged: list[int] = []
    halfway = asyncio.Event()
    try:
        async with bus.subscribe("durable") as sub:

            async def publisher() -> None:
                for i in range(600):
                    await bus.apublish("durable", i)
                    acknowledged.append(i)
                    if i == 199:
                        halfway.set()
                    await asyncio.sleep(0.002)

            task = asyncio.ensure_future(publisher())
            await asyncio.wait_for(halfway.wait(), TIMEOUT)
            await asyncio.to_thread(server.restart, 0.3)
            await asyncio.wait_for(task, 60)
            with server.client() as client:
                truth = [
                    (entry_id.decode(), json.loads(fields[b"data"]))
                    for entry_id, fields in client.xrange(wire(bus, "durable"))
                ]
            got = [await sub.get(TIMEOUT) for _ in range(len(truth))]
            await asyncio.sleep(0.3)
            assert sub.pending == 0  # nothing repeated after the restart
        assert [(e.id, e.message) for e in got] == truth  # nothing lost, in order
        received = [e.message for e in got]
        assert set(acknowledged) <= set(received)
        assert received[:200] == list(range(200))
        stats = bus.stats()
        assert stats["disconnects"] >= 1
        assert stats["reconnects"] >= 1
        assert "lost its connection" in caplog.text
    finally:
        await closing(bus)


async def test_streams_resume_even_a_channel_that_got_no_event_yet(
    redis_server: Callable[..., RedisServer],
) -> None:
    """Events added while the connection is down reach every channel after the
    reconnect, also one whose subscribers had not received anything yet (the
    hub knows no id to resume it from)."""
    server = redis_server(password="admin-pw")
    with server.client() as client:
        client.execute_command("ACL", "SETUSER", "app", "on", ">app-pw", "~*", "&*", "+@all")
    location = f"redis://app:app-pw@127.0.0.1:{server.port}/0"
    bus = make_bus("redis-stream", LOCATION=location, OPTIONS={"TIMEOUT": 10})
    try:
        async with bus.subscribe("quiet") as quiet, bus.subscribe("busy") as busy:
            await bus.apublish("busy", 0)
            assert (await busy.get(TIMEOUT)).message == 0
            with server.client() as client:
                # Lock the app out so it cannot reconnect, and cut it off.
                client.execute_command("ACL", "SETUSER", "app", "off")
                client.execute_command("CLIENT", "KILL", "USER", "app")
                client.xadd(wire(bus, "quiet"), {"data": json.dumps("meanwhile")})
                client.xadd(wire(bus, "busy"), {"data": json.dumps(1)})
                await asyncio.sleep(0.5)  # noticed, and a few reconnects refused
                assert bus.stats()["disconnects"] == 1
                client.execute_command("ACL", "SETUSER", "app", "on")
            assert (await quiet.get(TIMEOUT)).message == "meanwhile"
            assert (await busy.get(TIMEOUT)).message == 1
            await bus.apublish("quiet", "after")
            assert (await quiet.get(TIMEOUT)).message == "after"
            assert quiet.pending == busy.pending == 0
        assert bus.stats()["reconnects"] == 1
    finally:
        await closing(bus)


async def test_pubsub_receives_again_within_2s_and_counts_the_gap(
    redis_server: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_server()
    bus = make_bus("redis", LOCATION=server.url, OPTIONS={"TIMEOUT": 10})
    loop = asyncio.get_running_loop()
    try:
        async with bus.subscribe("live") as sub:
            await bus.apublish("live", "before")
            assert (await sub.get(TIMEOUT)).message == "before"
            await asyncio.to_thread(server.restart, 0.5)
            back = loop.time()
            stop = asyncio.Event()

            async def keep_publishing() -> None:
                with server.client() as client:
                    while not stop.is_set():
                        client.publish(wire(bus, "live"), json.dumps("after"))
                        await asyncio.sleep(0.02)

            task = asyncio.ensure_future(keep_publishing())
            try:
                event = await sub.get(TIMEOUT)
                elapsed = loop.time() - back
            finally:
                stop.set()
                await task
            assert event.message == "after"
            assert elapsed < 2.0, f"received again {elapsed:.2f}s after Redis returned"
            # Publishing through the bus works again too.
            await bus.apublish("live", "through the bus")
            while (await sub.get(TIMEOUT)).message != "through the bus":
                pass
        stats = bus.stats()
        assert stats["disconnects"] >= 1
        assert stats["reconnects"] >= 1
        assert stats["outage_seconds"] > 0.3
        assert "events sent meanwhile were lost" in caplog.text
    finally:
        await closing(bus)


async def test_publish_during_an_outage_waits_then_raises(
    redis_server: Callable[..., RedisServer], name: str
) -> None:
    server = redis_server()
    bus = make_bus(name, LOCATION=server.url, OPTIONS={"TIMEOUT": 0.5})
    try:
        await bus.apublish("outage", 1)
        server.stop()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"within 0\.5s"):
            await bus.apublish("outage", 2)
        assert 0.3 < time.monotonic() - started < 5
        # A publish waiting while Redis is down goes through once it is back.
        bus2 = make_bus(name, LOCATION=server.url, OPTIONS={"TIMEOUT": 10})
        try:
            publish = asyncio.ensure_future(bus2.apublish("outage", 3))
            await asyncio.sleep(0.5)
            assert not publish.done()
            await asyncio.to_thread(server.start)
            await asyncio.wait_for(publish, TIMEOUT)
        finally:
            await closing(bus2)
    finally:
        await closing(bus)


# -- bad bytes, emptied streams ---------------------------------------------------


async def test_junk_on_the_wire_is_logged_and_skipped(
    name: str, admin: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    bus = make_bus(name)
    try:
        async with bus.subscribe("junky") as sub:
            key = wire(bus, "junky")
            if name == "redis":
                await admin.publish(key, b"\xff not json")
                junk = 1
            else:
                await admin.xadd(key, {"data": b"\xff not json"})
                await admin.xadd(key, {"someone": "else's entry"})
                junk = 2
            await bus.apublish("junky", "fine")
            event = await sub.get(TIMEOUT)
            assert event.message == "fine"
            assert sub.pending == 0
        assert bus.stats()["undecodable"] == junk
        assert caplog.text.count("skipped an undecodable json payload on channel 'junky'") == junk
        if name == "redis-stream":
            assert [e.message for e in await bus.ahistory("junky")] == ["fine"]
    finally:
        await closing(bus)


async def test_emptied_trimmed_and_deleted_streams_do_not_break_the_reader(
    admin: aioredis.Redis,
) -> None:
    """encode/broadcaster's Streams reader crashed once a channel was emptied."""
    bus = make_bus("redis-stream")
    try:
        async with bus.subscribe("trim", "other") as sub:
            key = wire(bus, "trim")
            await bus.apublish("trim", 1)
            assert (await sub.get(TIMEOUT)).message == 1
            await admin.xtrim(key, maxlen=0)  # emptied, the key stays
            await bus.apublish("trim", 2)
            assert (await sub.get(TIMEOUT)).message == 2
            await admin.delete(key)
            # A new stream restarts ids from the clock: let it pass the last id seen.
            await asyncio.sleep(0.005)
            await bus.apublish("trim", 3)
            assert (await sub.get(TIMEOUT)).message == 3
            await admin.delete(key)
            await bus.apublish("other", "still reading")
            assert (await sub.get(TIMEOUT)).message == "still reading"
            assert await bus.ahistory("trim") == []
        assert bus.stats()["disconnects"] == 0
    finally:
        await closing(bus)


async def test_streams_key_holding_other_data_is_logged_and_left_alone(
    admin: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    bus = make_bus("redis-stream")
    try:
        await admin.set(wire(bus, "taken"), "someone else's string")
        async with bus.subscribe("taken", "fine") as sub:
            await bus.apublish("fine", 1)
            assert (await sub.get(TIMEOUT)).message == 1
            async with bus.subscribe("fine.too") as again:
                await bus.apublish("fine.too", 2)
                assert (await again.get(TIMEOUT)).message == 2
        key = wire(bus, "taken")
        assert f"Redis key {key!r} holds a string, not a stream" in caplog.text
        assert bus.stats()["disconnects"] == 0
    finally:
        await admin.delete(wire(bus, "taken"))
        await closing(bus)


# -- Streams specifics ----------------------------------------------------------


async def test_streams_subscribe_starts_from_now() -> None:
    bus = make_bus("redis-stream")
    try:
        await bus.apublish("now", "old")
        async with bus.subscribe("now") as sub:
            await bus.apublish("now", "new")
            assert (await sub.get(TIMEOUT)).message == "new"
            await asyncio.sleep(0.1)
            assert sub.pending == 0
    finally:
        await closing(bus)


@pytest.mark.parametrize("unblock", [True, False], ids=["client-unblock", "no-client-unblock"])
async def test_streams_reader_picks_up_new_channels_at_once(
    redis_server: Callable[..., RedisServer], unblock: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A subscribe while the reader waits for wake-ups of other streams is served
    at once, also where ACLs forbid CLIENT UNBLOCK (which the reader never needs)."""
    acl = [] if unblock else ["--user", "default", "on", "nopass", "~*", "&*", "+@all"]
    server = redis_server(*(acl and [*acl, "-client|unblock"]))
    caplog.set_level(logging.INFO, "django_broadcaster")
    bus = make_bus("redis-stream", LOCATION=server.url)
    loop = asyncio.get_running_loop()
    try:
        async with bus.subscribe("first") as first:
            await bus.apublish("first", 0)
            assert (await first.get(TIMEOUT)).message == 0
            for i in range(5):
                await asyncio.sleep(0.2)  # the reader now waits on "first" alone
                async with bus.subscribe(f"late.{i}") as late:
                    started = loop.time()
                    await bus.apublish(f"late.{i}", i)
                    assert (await late.get(TIMEOUT)).message == i
                    assert loop.time() - started < 0.5
        assert "CLIENT UNBLOCK" not in caplog.text
    finally:
        await closing(bus)


async def test_streams_reader_reads_only_the_streams_that_changed(
    redis_server: Callable[..., RedisServer],
) -> None:
    """Following many channels costs an event nothing: the reader is told which
    stream changed and reads that one alone (seen in the slow log, which on this
    server records every command with its arguments)."""
    server = redis_server()
    bus = make_bus("redis-stream", LOCATION=server.url)
    quiet = [bus.subscribe(f"quiet.{i}") for i in range(300)]
    try:
        await asyncio.gather(*(s.__aenter__() for s in quiet))
        async with bus.subscribe("busy") as busy:
            await bus.apublish("busy", "warm")
            assert (await busy.get(TIMEOUT)).message == "warm"
            await asyncio.sleep(0.2)  # every stream's first read is done
            with server.client() as client:
                client.config_set("slowlog-log-slower-than", 0)
                client.config_set("slowlog-max-len", 1000)
                client.slowlog_reset()
                for i in range(5):
                    await bus.apublish("busy", i)
                    assert (await busy.get(TIMEOUT)).message == i
                reads = [
                    entry["command"].split()
                    for entry in client.slowlog_get(1000)
                    if entry["command"].startswith(b"XREAD")
                ]
        assert reads
        assert all(read[3:5] == [b"STREAMS", wire(bus, "busy").encode()] for read in reads)
        assert all(len(read) == 6 for read in reads)  # XREAD COUNT 100 STREAMS key id
    finally:
        await asyncio.gather(*(s.__aexit__(None, None, None) for s in quiet))
        await closing(bus)


async def test_streams_are_capped_by_maxlen(admin: aioredis.Redis) -> None:
    bus = make_bus("redis-stream", OPTIONS={"MAXLEN": 50})
    try:
        ids = await asyncio.gather(*(bus.apublish("capped", i) for i in range(2000)))
        length = await admin.xlen(wire(bus, "capped"))
        assert 50 <= length < 250  # "~": Redis trims whole nodes (100 entries)
        history = await bus.ahistory("capped", limit=None)
        assert [e.message for e in history] == list(range(2000 - length, 2000))
        assert [e.id for e in history] == ids[-length:]
    finally:
        await admin.delete(wire(bus, "capped"))
        await closing(bus)


async def test_streams_history_pages_through_long_streams() -> None:
    bus = make_bus("redis-stream")
    try:
        ids = await asyncio.gather(*(bus.apublish("long", i) for i in range(2500)))
        assert [e.message for e in await bus.ahistory("long", limit=None)] == list(range(2500))
        after = await bus.ahistory("long", since=ids[999], limit=None)
        assert [e.message for e in after] == list(range(1000, 2500))
        assert await bus.ahistory("long", limit=0) == []
        with pytest.raises(ValueError, match="not an event id"):
            await bus.ahistory("long", since="yesterday")
    finally:
        await closing(bus)


# -- connections -------------------------------------------------------------------


async def test_connection_count_stays_bounded(
    redis_server: Callable[..., RedisServer], name: str
) -> None:
    server = redis_server()
    bus = make_bus(name, LOCATION=server.url)
    try:
        for i in range(1000):
            async with bus.subscribe(f"cycle.{i % 7}", "shared"):
                pass
        # Overlapping ones too, so subscribe/unsubscribe are batched.
        for _ in range(20):
            subs = [bus.subscribe(f"burst.{i}") for i in range(50)]
            await asyncio.gather(*(s.__aenter__() for s in subs))
            await asyncio.gather(*(s.__aexit__(None, None, None) for s in subs))
        async with bus.subscribe("threads") as sub:

            def worker(n: int) -> None:
                for i in range(125):
                    bus.publish("threads", [n, i])

            threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
            await asyncio.to_thread(
                lambda: [t.start() for t in threads] and [t.join() for t in threads]
            )
            assert len([await sub.get(TIMEOUT) for _ in range(1000)]) == 1000
        with server.client() as client:
            clients = client.client_list()
        ours = [c for c in clients if c["name"].startswith("django-broadcaster")]
        # This loop: one pooled command connection and the reading connection;
        # the sync bridge loop: one pooled connection. Plus the one counting.
        assert len(ours) <= 4, clients
        assert len(clients) <= len(ours) + 1, clients
    finally:
        await closing(bus)


async def test_close_ends_a_pending_receive_promptly(name: str) -> None:
    backend = backend_of(name)

    async def ended_by(action: Any, task: asyncio.Task[Any]) -> None:
        started = time.monotonic()
        await asyncio.wait_for(action(), 2)
        done, _ = await asyncio.wait([task], timeout=1)
        assert done, "receive() still pending"
        assert time.monotonic() - started < 1

    # Waiting while nothing is subscribed: no spinning, and close() ends it.
    await backend.connect()
    task = asyncio.ensure_future(backend.receive())
    cpu = time.process_time()
    await asyncio.sleep(0.3)
    assert time.process_time() - cpu < 0.1
    assert not task.done()
    await ended_by(backend.close, task)
    assert isinstance(task.exception(), backend.connection_errors)
    await backend.close()  # twice: no error

    # Blocked reading a subscribed channel: close() ends it.
    await backend.connect()
    task = asyncio.ensure_future(backend.receive())
    await backend.subscribe({"a": None})
    await asyncio.sleep(0.2)
    assert not task.done()
    await ended_by(backend.close, task)
    assert isinstance(task.exception(), backend.connection_errors)

    # Cancelling a blocked receive finishes at once too, and the backend goes on.
    await backend.connect()
    await backend.subscribe({"a": None})
    task = asyncio.ensure_future(backend.receive())
    await asyncio.sleep(0.2)

    async def cancel() -> None:
        task.cancel()

    await ended_by(cancel, task)
    assert task.cancelled()
    await backend.subscribe({"b": None})
    task = asyncio.ensure_future(backend.receive())
    publisher = backend_of(name)
    publisher.key_prefix = backend.key_prefix
    await publisher.connect()
    try:
        await asyncio.sleep(0.1)
        await publisher.publish("b", b'"after cancel"')
        events = await asyncio.wait_for(task, TIMEOUT)
        assert [(e.channel, e.payload) for e in events] == [("b", b'"after cancel"')]
    finally:
        await publisher.close()
        await asyncio.wait_for(backend.close(), 2)


async def test_a_lost_command_connection_is_healed_by_reconnecting_only(
    redis_server: Callable[..., RedisServer], name: str
) -> None:
    """The hub heals connections: once a command failed, the backend raises one of
    its ``connection_errors`` instead of reopening a connection itself, until
    ``close()`` and ``connect()``. A cancelled command is no failure of the link:
    its connection (a reply may still be due) is replaced by the next call."""
    server = redis_server()
    backend = backend_of(name, server.url)
    await backend.connect()
    try:
        await backend.publish("a", b"1")
        await asyncio.to_thread(server.restart)
        for _ in range(2):  # the failure, then no connection of its own making
            with pytest.raises(backend.connection_errors):
                await backend.publish("a", b"2")
        await backend.close()
        await backend.connect()
        await backend.publish("a", b"3")

        publishing = asyncio.ensure_future(backend.publish("a", b"4"))
        await asyncio.sleep(0)  # sent; its reply is due
        publishing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await publishing
        await backend.publish("a", b"5")
    finally:
        await backend.close()


# -- secrets and settings -------------------------------------------------------------

SECRET = "s3cr3t-Pa55word"


async def test_password_never_in_logs_repr_or_errors(
    redis_server: Callable[..., RedisServer], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = redis_server(password=SECRET)
    assert SECRET in server.url
    bus = make_bus(name, LOCATION=server.url, OPTIONS={"TIMEOUT": 10})
    wrong = make_bus(
        name, LOCATION=server.url.replace(SECRET, "x" + SECRET), OPTIONS={"TIMEOUT": 0.3}
    )
    texts: list[str] = []
    try:
        async with bus.subscribe("secret") as sub:
            await bus.apublish("secret", "ok")
            assert (await sub.get(TIMEOUT)).message == "ok"
            texts += [repr(bus), repr(bus.hubs.current().backend), repr(sub), str(bus.stats())]
            await asyncio.to_thread(server.restart)  # reconnects, logging warnings
            await reconnected(bus)  # (pub/sub would lose what is sent before)
            await bus.apublish("secret", "again")
            while (await sub.get(TIMEOUT)).message != "again":
                pass
        with pytest.raises(BackendUnavailable) as wrong_password:
            await wrong.apublish("secret", "no")
        texts.append(str(wrong_password.value))
        server.stop()
        with pytest.raises(BackendUnavailable) as down:
            await wrong.apublish("secret", "no")
        texts.append(str(down.value))
        assert "AuthenticationError" in texts[-2] or "password" in texts[-2].lower()
        for location in (
            server.url.replace("redis://", "http://"),
            server.url.replace("/0", "/not-a-db"),
        ):
            with pytest.raises(ConfigError) as bad:
                create_broadcast(
                    "default",
                    {"BACKEND": CONFORMANCE_BACKENDS[name]["BACKEND"], "LOCATION": location},
                )
            texts.append(str(bad.value))
    finally:
        await closing(bus)
        await closing(wrong)
    texts.append(caplog.text)
    assert "lost its connection" in caplog.text
    for text in texts:
        assert SECRET not in text


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"LOCATION": ""}, "needs LOCATION"),
        ({"LOCATION": "http://localhost:6379"}, "must be a redis://, rediss:// or unix:// URL"),
        ({"LOCATION": "localhost:6379"}, "must be a redis://"),
        ({"LOCATION": "redis://localhost:6379/db1"}, "database number must be a whole number"),
        ({"LOCATION": "redis://localhost:port/0"}, "not a valid Redis URL"),
        ({"OPTIONS": {"CONNECTION_KWARGS": "x"}}, "must be a dict"),
        ({"OPTIONS": {"CONNECTION_KWARGS": {"decode_responses": True}}}, "cannot set"),
        ({"OPTIONS": {"MAXLEN": 0}}, "MAXLEN"),
        ({"OPTIONS": {"MAXLEN": "10"}}, "MAXLEN"),
        ({"OPTIONS": {"MAXLEN": 10, "BOGUS": 1}}, "unknown key"),
    ],
)
def test_settings_are_checked(entry: dict[str, Any], message: str) -> None:
    full = {
        "BACKEND": "django_broadcaster.backends.redis.RedisStreamBackend",
        "LOCATION": REDIS_URL,
        **entry,
    }
    with pytest.raises(ConfigError, match=message):
        create_broadcast("default", full)


def test_settings_accepted() -> None:
    for location in (
        "redis://127.0.0.1:6379/0",
        "rediss://:pw@example.com:6380/1",
        "unix:///run/redis.sock?db=2",
    ):
        bus = create_broadcast(
            "default",
            {
                "BACKEND": "django_broadcaster.backends.redis.RedisStreamBackend",
                "LOCATION": location,
                "OPTIONS": {"MAXLEN": 5, "CONNECTION_KWARGS": {"socket_timeout": 2}},
            },
        )
        assert bus.supports_history
        assert "pw" not in repr(bus)
    pubsub = create_broadcast(
        "default",
        {"BACKEND": "django_broadcaster.backends.redis.RedisBackend", "LOCATION": REDIS_URL},
    )
    assert not pubsub.supports_history
    with pytest.raises(ConfigError, match="unknown key"):
        create_broadcast(
            "default",
            {
                "BACKEND": "django_broadcaster.backends.redis.RedisBackend",
                "LOCATION": REDIS_URL,
                "OPTIONS": {"MAXLEN": 5},  # a Streams option
            },
        )


async def test_unix_socket_location(redis_server: Callable[..., RedisServer], name: str) -> None:
    directory = tempfile.mkdtemp(prefix="broadcaster-sock-")
    path = f"{directory}/redis.sock"
    try:
        redis_server("--unixsocket", path, "--unixsocketperm", "700")
        bus = make_bus(name, LOCATION=f"unix://{path}?db=3")
        try:
            async with bus.subscribe("sock") as sub:
                await bus.apublish("sock", "via unix socket")
                assert (await sub.get(TIMEOUT)).message == "via unix socket"
        finally:
            await closing(bus)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("name", ["redis", "redis-stream"])
async def test_failed_subscribe_raises_cleanly_and_leaves_nothing(name: str) -> None:
    """encode/broadcaster #142: a failed subscribe surfaced as a KeyError on exit."""
    bus = make_bus(name, LOCATION="redis://:hunter2@127.0.0.1:1/0", OPTIONS={"TIMEOUT": 0.3})
    try:
        entered = False
        with pytest.raises(BackendUnavailable, match=r"within 0\.3s") as info:
            async with bus.subscribe("unreachable"):
                entered = True
        assert not entered
        assert "hunter2" not in str(info.value)
        hub = bus.hubs.current()
        assert hub.subscribers == {} and hub.upstream == set()
    finally:
        await bus.aclose()


async def test_a_cancelled_publish_costs_no_reconnect(name: str) -> None:
    """A request cancelled mid-publish (its client left) must not break the loop's
    connection: every subscription of the process would pay a reconnect for it."""
    bus = make_bus(name)
    try:
        async with bus.subscribe("cancelled") as sub:
            publishing = asyncio.ensure_future(bus.apublish("cancelled", 1))
            for _ in range(2):  # the command is on the wire, its reply not read yet
                await asyncio.sleep(0)
            publishing.cancel()
            with pytest.raises(asyncio.CancelledError):
                await publishing
            await bus.apublish("cancelled", 2)
            assert [(await sub.get(10)).message for _ in range(2)] == [1, 2]
        assert bus.stats()["disconnects"] == 0
    finally:
        await closing(bus)


async def test_a_publish_that_heals_the_connection_counts_one_outage(
    admin: aioredis.Redis,
) -> None:
    """Only the command connection dies: the publish renews every connection, the
    reader then sees its link closed by that renewal — one outage, not two, and
    later subscriptions are applied at once."""
    bus = make_bus("redis", OPTIONS={"CONNECTION_KWARGS": {"client_name": "heal-once"}})
    try:
        async with bus.subscribe("before") as before:
            clients = await admin.client_list()
            command = [c for c in clients if c["name"] == "heal-once" and c["sub"] == "0"]
            assert len(command) == 1
            await admin.client_kill_filter(_id=command[0]["id"])
            await bus.apublish("before", 1)
            assert (await before.get(10)).message == 1
            async with bus.subscribe("after") as after:
                await bus.apublish("after", 2)
                assert (await after.get(10)).message == 2
        stats = bus.stats()
        assert (stats["disconnects"], stats["reconnects"]) == (1, 1)
    finally:
        await closing(bus)


async def test_streams_read_an_entry_added_outside_the_bus() -> None:
    """A bare ``XADD`` (another program's) publishes no wake-up: the reader still
    reads it, on its read of every stream every ``CATCH_UP_SECONDS``."""
    bus = make_bus("redis-stream")
    admin = aioredis.Redis.from_url(REDIS_URL, protocol=2)
    try:
        async with bus.subscribe("outside") as sub:
            await bus.apublish("outside", "through the bus")
            assert (await sub.get(10)).message == "through the bus"  # the reader is settled
            await admin.xadd(
                bus.config.backend_class(bus.config).wire_name("outside"),
                {b"data": b'"outside the bus"'},
            )
            assert (await sub.get(15)).message == "outside the bus"
    finally:
        await admin.aclose()
        await bus.aclose()
