"""Half-open links: the subscriber's link goes dark while the server side ends behind it.

A `DarkProxy` between the subscriber and the server stops forwarding (no FIN,
no RST); meanwhile Redis restarts, or PostgreSQL terminates the sessions that
came through the proxy; then the link heals. The subscriber's connections are
dead but nothing tells it: only a liveness probe can. A second process
publishes `COUNT` events at about 1 ms intervals straight to the server all
along. Redis Streams and PostgreSQL must deliver every event exactly once in
order; Redis pub/sub must resume (the loss is reported as an outage).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from django_broadcaster import Broadcast
from django_broadcaster.config import create_broadcast
from tests.support.backends import POSTGRES_URL
from tests.support.dark_proxy import DarkProxy
from tests.support.redis_servers import RedisServer
from tests.support.waiting import TIMEOUT, eventually

ROOT = Path(__file__).resolve().parents[2]
COUNT = 3000
PAUSE = 0.001
#: Per variant, the subscriber's LIVENESS_INTERVAL and how long the link stays
#: dark once the server side ended: "long", longer than the detection bound
#: (noticed in the dark); "short", healed before the first probe (the probe,
#: sent after the heal, is what finds the connection gone).
VARIANTS = {"long": (0.5, 1.5), "short": (2.0, 0.0)}
BACKENDS = {
    "redis": "django_broadcaster.backends.redis.RedisBackend",
    "redis-stream": "django_broadcaster.backends.redis.RedisStreamBackend",
    "postgres": "django_broadcaster.backends.postgres.PostgresBackend",
}


@dataclass
class Link:
    """Where the subscriber connects (through the proxy), where the publisher
    connects (straight), and how to end the server side of the subscriber's link."""

    proxy: DarkProxy
    subscriber_location: str
    publisher_location: str
    end_server_side: Callable[[], None]


@contextmanager
def redis_link() -> Iterator[Link]:
    server = RedisServer(persistent=True)  # Streams keep their events over the restart
    server.start()
    proxy = DarkProxy(server.port).start()
    try:
        yield Link(proxy, f"redis://127.0.0.1:{proxy.port}/0", server.url, server.restart)
    finally:
        proxy.stop()
        server.cleanup()


def terminate_sessions(ports: set[int]) -> None:
    """``pg_terminate_backend`` every session whose client port is one of ``ports``."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE client_addr = '127.0.0.1' AND client_port = ANY(%s)",
            (sorted(ports),),
        ).fetchall()
    assert rows, "no session of the subscriber found to terminate"


@contextmanager
def postgres_link() -> Iterator[Link]:
    proxy = DarkProxy(5432).start()
    database = connection.settings_dict["NAME"]  # the test database, with the history table
    try:
        yield Link(
            proxy,
            f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}",
            f"postgresql://postgres@127.0.0.1:5432/{database}",
            lambda: terminate_sessions(proxy.server_ports()),
        )
    finally:
        proxy.stop()


def subscriber_bus(kind: str, location: str, prefix: str, liveness: float | None) -> Broadcast:
    options: dict[str, object] = {"MAX_QUEUE": COUNT + 10}
    if kind != "redis-stream":  # its XREAD has its own deadline
        options["LIVENESS_INTERVAL"] = liveness
    if kind == "postgres":
        # The outage spans more events than this, all still in the table (the
        # publisher keeps 1000): a resume must hand out all of them.
        options["HISTORY_SIZE"] = 200
    entry = {"BACKEND": BACKENDS[kind], "LOCATION": location, "KEY_PREFIX": prefix}
    return create_broadcast("default", {**entry, "OPTIONS": options})


async def publisher(kind: str, location: str, prefix: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.reliability.peers",
        "publish",
        BACKENDS[kind],
        location,
        prefix,
        "feed",
        "a",
        str(COUNT),
        str(PAUSE),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture(
    params=[
        ("redis", "long"),
        ("redis", "short"),
        ("redis-stream", "long"),
        ("postgres", "long"),
        ("postgres", "short"),
    ],
    ids=lambda param: "-".join(param),
)
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(backend, variant); the Streams reader's deadline is fixed: one variant."""
    if request.param[0] == "postgres":
        request.getfixturevalue("postgres_table")
    param: tuple[str, str] = request.param
    return param


def straight_bus(kind: str, location: str, prefix: str) -> Broadcast:
    """A bus of this process connected straight to the server."""
    return create_broadcast(
        "default", {"BACKEND": BACKENDS[kind], "LOCATION": location, "KEY_PREFIX": prefix}
    )


async def stored(kind: str, location: str, prefix: str) -> list[int]:
    """The numbers the server holds on ``feed``, in order: a publish retried over
    the Redis restart (its reply lost) is stored twice, and must arrive twice."""
    if kind == "postgres":
        return list(range(COUNT))  # its publisher never saw an outage
    bus = straight_bus(kind, location, prefix)
    try:
        return [event.message[1] for event in await bus.ahistory("feed", limit=None)]
    finally:
        await bus.aclose()


async def first_disconnect(bus: Broadcast) -> float:
    """When (``time.monotonic()``) ``bus`` first counted a disconnect."""
    await eventually(lambda: bus.stats()["disconnects"], 30)
    return time.monotonic()


async def test_half_open_link_is_noticed_and_healed(
    case: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    kind, variant = case
    liveness, dark = VARIANTS[variant]
    caplog.set_level(logging.INFO, "django_broadcaster")
    prefix = f"h{uuid.uuid4().hex[:10]}"
    with redis_link() if kind.startswith("redis") else postgres_link() as link:
        bus = subscriber_bus(kind, link.subscriber_location, prefix, liveness)
        received: list[int] = []
        try:
            async with bus.subscribe("feed") as sub:

                async def collect() -> None:
                    async for event in sub:
                        received.append(event.message[1])

                collector = asyncio.ensure_future(collect())
                process = await publisher(kind, link.publisher_location, prefix)
                await eventually(lambda: len(received) >= 300, 30)
                noticed = asyncio.ensure_future(first_disconnect(bus))
                link.proxy.go_dark()
                dark_at = time.monotonic()
                await asyncio.to_thread(link.end_server_side)
                await asyncio.sleep(dark)
                link.proxy.heal()
                healed_at = time.monotonic()
                await eventually(lambda: bus.stats()["reconnects"] >= 1, TIMEOUT)
                stdout, _ = await asyncio.wait_for(process.communicate(), 60)
                assert process.returncode == 0, stdout
                if kind == "redis":
                    # At most once: events published before the resubscription are
                    # lost, later ones arrive.
                    final = straight_bus(kind, link.publisher_location, prefix)
                    await final.apublish("feed", ["a", COUNT])
                    await final.aclose()
                    await eventually(lambda: received[-1:] == [COUNT], TIMEOUT)
                    received.pop()
                else:
                    await eventually(lambda: received[-1:] == [COUNT - 1], 30)
                    await asyncio.sleep(0.2)  # a duplicate would show up by now
                collector.cancel()
                stats = bus.stats()
        finally:
            await bus.aclose()
        expected = [] if kind == "redis" else await stored(kind, link.publisher_location, prefix)
    sys.stderr.write(
        f"\n[half-open {kind} {variant}] received {len(received)} of {COUNT}; dead link noticed "
        f"{noticed.result() - dark_at:.2f}s after going dark (healed after "
        f"{healed_at - dark_at:.2f}s); disconnects {stats['disconnects']}, "
        f"outage {stats['outage_seconds']:.2f}s\n"
    )
    assert stats["disconnects"] >= 1 and stats["reconnects"] >= 1
    if kind == "redis":
        assert received == sorted(set(received)), "events duplicated or out of order"
        assert any("events sent meanwhile were lost" in r.getMessage() for r in caplog.records)
    else:
        missing = sorted(set(expected) - set(received))
        assert not missing, f"lost {len(missing)} events, {missing[0]}..{missing[-1]}"
        assert received == expected, "events duplicated or out of order"
