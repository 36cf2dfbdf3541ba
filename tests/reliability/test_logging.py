"""Logging: quiet when healthy, one line when an outage starts and one when it ends.

Everything the app logs goes to the ``django_broadcaster`` logger hierarchy
(``django_broadcaster``, ``django_broadcaster.layers``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection

from django_broadcaster import Broadcast
from django_broadcaster.config import create_broadcast
from django_broadcaster.layers import BroadcastChannelLayer
from tests.support.backends import POSTGRES_URL
from tests.support.redis_servers import RedisServer
from tests.support.waiting import TIMEOUT, eventually

OUTAGE_BACKENDS = {
    "redis": "django_broadcaster.backends.redis.RedisBackend",
    "redis-stream": "django_broadcaster.backends.redis.RedisStreamBackend",
    "postgres": "django_broadcaster.backends.postgres.PostgresBackend",
}


def loud(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records at WARNING or above, from any logger."""
    return [
        f"{r.name} {r.levelname}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.WARNING
    ]


async def test_a_healthy_round_logs_nothing_at_warning_or_above(
    bus: Broadcast, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "django_broadcaster")
    async with bus.subscribe("news", "other") as sub:
        for n in range(20):
            await bus.apublish("news", {"n": n})
        await asyncio.to_thread(bus.publish, "other", "from a thread")
        got = [(await sub.get(TIMEOUT)).message for _ in range(21)]
    assert got[:20] == [{"n": n} for n in range(20)] and got[20] == "from a thread"
    if bus.supports_history:
        assert len(await bus.ahistory("news", limit=None)) == 20
    layer = BroadcastChannelLayer(using=bus)
    try:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        await layer.group_send("room", {"type": "chat.message", "text": "hi"})
        assert (await asyncio.wait_for(layer.receive(channel), TIMEOUT))["text"] == "hi"
        await layer.send(channel, {"type": "direct"})
        assert (await asyncio.wait_for(layer.receive(channel), TIMEOUT))["type"] == "direct"
        await layer.group_discard("room", channel)
    finally:
        await layer.close()
    await bus.aclose()
    assert loud(caplog) == []


@contextmanager
def redis_outage() -> Iterator[tuple[str, Callable[[], None]]]:
    server = RedisServer(persistent=True)
    server.start()
    try:
        yield server.url, lambda: server.restart(down_for=1.0)
    finally:
        server.cleanup()


@contextmanager
def postgres_outage() -> Iterator[tuple[str, Callable[[], None]]]:
    name = f"bcast-{uuid.uuid4().hex[:12]}"
    database = connection.settings_dict["NAME"]

    def terminate() -> None:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (name,),
            )

    yield f"postgresql://postgres@127.0.0.1:5432/{database}?application_name={name}", terminate


@pytest.fixture(params=list(OUTAGE_BACKENDS))
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        request.getfixturevalue("postgres_table")
    name: str = request.param
    return name


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "django_broadcaster")
    outage = redis_outage() if kind.startswith("redis") else postgres_outage()
    with outage as (location, break_it):
        bus = create_broadcast(
            "default",
            {
                "BACKEND": OUTAGE_BACKENDS[kind],
                "LOCATION": location,
                "KEY_PREFIX": f"l{uuid.uuid4().hex[:10]}",
                "OPTIONS": {"TIMEOUT": 30},
            },
        )
        try:
            async with bus.subscribe("news") as sub:
                await bus.apublish("news", "before")
                assert (await sub.get(TIMEOUT)).message == "before"
                await asyncio.to_thread(break_it)
                # Publishes during the outage retry; the reader reconnects too.
                await asyncio.gather(*(bus.apublish("news", f"during {n}") for n in range(5)))
                await eventually(lambda: bus.stats()["reconnects"] >= 1)
                await bus.apublish("news", "after")
                while (await sub.get(TIMEOUT)).message != "after":
                    pass  # pub/sub may miss those sent before it re-subscribed
            stats = bus.stats()
        finally:
            await bus.aclose()
    lines = loud(caplog)
    started = [line for line in lines if "lost its connection" in line]
    ended = [line for line in lines if "reconnected after" in line]
    assert len(started) == 1 and len(ended) == 1, lines
    assert re.search(r"reconnected after \d+\.\d\ds", ended[0]), ended[0]
    assert stats["disconnects"] == 1 and stats["reconnects"] == 1
    assert set(lines) == {*started, *ended}, "nothing else is logged at WARNING or above"
