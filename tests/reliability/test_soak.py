"""Soak: subscriber and publisher processes through a restart and a killed connection.

`SUBSCRIBERS` subscriber processes and `PUBLISHERS` publisher processes share
one channel; each publisher sends `PER_PUBLISHER` numbered events as fast as
it can. When every publisher is a third of the way in, the backend
"restarts" (Redis: the server is restarted, with its append-only file;
PostgreSQL: every session of the test's processes is terminated, as a restart
would); at two thirds one subscriber's connection is killed (``CLIENT KILL``,
``pg_terminate_backend``).
On Redis Streams and PostgreSQL every subscriber must then have received
exactly what the server stored, in order: every event once, each publisher's
in its order (a publish retried over the restart after its reply was lost is
stored twice and received twice; those are counted and reported). On Redis
pub/sub (at most once) each subscriber's events must be in order without
duplicates, delivery must resume (each publisher's last event arrives), and
what is lost must be bounded by the outages: at most one gap per outage the
subscriber counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
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
from tests.support.redis_servers import RedisServer

from .scale import scaled

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIBERS = 4
PUBLISHERS = 2
PER_PUBLISHER = scaled(10_000, 50_000)
TOTAL = PUBLISHERS * PER_PUBLISHER
BACKENDS = {
    "redis": "django_broadcaster.backends.redis.RedisBackend",
    "redis-stream": "django_broadcaster.backends.redis.RedisStreamBackend",
    "postgres": "django_broadcaster.backends.postgres.PostgresBackend",
}
#: Retention larger than the run, so the whole run can be read back.
KEEP_ALL: dict[str, dict[str, object]] = {
    "redis": {},
    "redis-stream": {"MAXLEN": 10 * TOTAL},
    "postgres": {"HISTORY_SIZE": None, "HISTORY_MAX_AGE": 3600},
}


@dataclass
class Setup:
    location: Callable[[str], str]  # the LOCATION of the process named so
    restart: Callable[[], None]
    kill: Callable[[str], None]  # kill the connections of the process named so


@contextmanager
def redis_setup() -> Iterator[Setup]:
    server = RedisServer(persistent=True)
    server.start()

    def kill(name: str) -> None:
        with server.client() as client:
            for entry in client.client_list():
                if entry["name"] == f"django-broadcaster:{name}":
                    client.client_kill_filter(_id=entry["id"])

    try:
        yield Setup(lambda name: server.url, lambda: server.restart(down_for=0.5), kill)
    finally:
        server.cleanup()


def terminate(pattern: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
            (pattern,),
        )


@contextmanager
def postgres_setup(run: str) -> Iterator[Setup]:
    database = connection.settings_dict["NAME"]
    yield Setup(
        lambda name: f"postgresql://postgres@127.0.0.1:5432/{database}?application_name={name}",
        lambda: terminate(f"{run}%"),
        terminate,
    )


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.reliability.peers",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def result(process: asyncio.subprocess.Process, timeout: float) -> dict[str, object]:
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, stdout[-2000:]
    parsed: dict[str, object] = json.loads(stdout.splitlines()[-1])
    return parsed


async def stored_events(bus: Broadcast) -> list[tuple[str, int]]:
    return [tuple(event.message) for event in await bus.ahistory("soak", limit=None)]  # type: ignore[misc]


@pytest.fixture(params=list(BACKENDS))
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        request.getfixturevalue("postgres_table")
    name: str = request.param
    return name


async def test_soak(kind: str) -> None:
    run = f"soak{uuid.uuid4().hex[:8]}"
    tags = [f"p{n}" for n in range(PUBLISHERS)]
    options = json.dumps(KEEP_ALL[kind])
    with redis_setup() if kind.startswith("redis") else postgres_setup(run) as setup:
        subscriber_names = [f"{run}-s{n}" for n in range(SUBSCRIBERS)]
        subscribers = [
            await spawn(
                "subscribe",
                BACKENDS[kind],
                setup.location(name),
                run,
                "soak",
                name,
                ",".join(tags),
                str(PER_PUBLISHER),
                options,
            )
            for name in subscriber_names
        ]
        for process in subscribers:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line.strip() == b"ready", line
        publishers = [
            await spawn(
                "publish",
                BACKENDS[kind],
                setup.location(f"{run}-{tag}"),
                run,
                "soak",
                tag,
                str(PER_PUBLISHER),
                "0",
                options,
            )
            for tag in tags
        ]
        watcher = create_broadcast(
            "watcher",
            {
                "BACKEND": BACKENDS[kind],
                "LOCATION": setup.location(f"watch{run}"),
                "KEY_PREFIX": run,
                "OPTIONS": {**KEEP_ALL[kind], "TIMEOUT": 60, "MAX_QUEUE": 10 * TOTAL},
            },
        )
        try:
            async with watcher.subscribe("soak") as progress:
                high = dict.fromkeys(tags, -1)  # the highest number seen per publisher
                faults: list[tuple[int, Callable[[], None]]] = [
                    (PER_PUBLISHER // 3, setup.restart),
                    (2 * PER_PUBLISHER // 3, lambda: setup.kill(subscriber_names[0])),
                ]
                while faults:
                    tag, number = (await progress.get(60)).message
                    high[tag] = max(high[tag], number)
                    # Once every publisher is that far: each has a third left after.
                    if min(high.values()) + 1 >= faults[0][0]:
                        await asyncio.to_thread(faults.pop(0)[1])
            for process in publishers:
                await result(process, 300)
            outcomes = [await result(process, 300) for process in subscribers]
            stored = await stored_events(watcher) if watcher.supports_history else []
        finally:
            await watcher.aclose()
    if kind == "redis":
        check_at_most_once(subscriber_names, outcomes, tags)
        return
    by_tag = {tag: [n for t, n in stored if t == tag] for tag in tags}
    duplicates = {tag: len(numbers) - len(set(numbers)) for tag, numbers in by_tag.items()}
    sys.stderr.write(
        f"\n[soak {kind}] {SUBSCRIBERS} subscribers x {TOTAL} events; publish duplicates "
        f"stored over the restart: {duplicates}; subscriber disconnects: "
        f"{[o['stats']['disconnects'] for o in outcomes]}\n"  # type: ignore[index]
    )
    for tag, numbers in by_tag.items():
        assert sorted(set(numbers)) == list(range(PER_PUBLISHER)), f"{tag}: not all stored"
        assert numbers == sorted(numbers), f"{tag}: stored out of order"
    for name, outcome in zip(subscriber_names, outcomes, strict=True):
        received = outcome["received"]
        assert isinstance(received, dict)
        for tag in tags:
            got, want = received[tag], by_tag[tag]
            missing = sorted(set(want) - set(got))
            assert not missing, f"{name} lost {len(missing)} of {tag}: {missing[:5]}..."
            assert got == want, f"{name}: {tag} duplicated or out of order"
        assert outcome["stats"]["disconnects"] >= 1  # type: ignore[index]


def gaps(numbers: list[int]) -> int:
    """How many ranges of 0..PER_PUBLISHER-1 are missing from ``numbers``."""
    present = set(numbers)
    return sum(1 for n in range(PER_PUBLISHER) if n not in present and (n == 0 or n - 1 in present))


def check_at_most_once(
    names: list[str], outcomes: list[dict[str, object]], tags: list[str]
) -> None:
    lost = []
    for name, outcome in zip(names, outcomes, strict=True):
        received = outcome["received"]
        stats = outcome["stats"]
        assert isinstance(received, dict) and isinstance(stats, dict)
        assert stats["disconnects"] >= 1, f"{name} never noticed the outage"
        for tag in tags:
            got = received[tag]
            assert got == sorted(set(got)), f"{name}: {tag} duplicated or out of order"
            assert got[-1] == PER_PUBLISHER - 1, f"{name}: delivery of {tag} never resumed {stats}"
            assert gaps(got) <= stats["disconnects"], f"{name}: {tag} lost more than outages"
        lost.append(sum(PER_PUBLISHER - len(received[tag]) for tag in tags))
    sys.stderr.write(f"\n[soak redis] lost per subscriber (of {TOTAL}): {lost}\n")
