"""Every backend of this repository, and a third-party-style one, through the
conformance kit (`django_broadcaster.testing.conformance`).

Services are real (Redis, PostgreSQL on loopback): when one is down, its tests
fail; they never skip.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from django.conf import settings

from django_broadcaster.backends import memory
from django_broadcaster.testing import conformance

from .thirdparty import loopback

#: Our PostgreSQL sessions, told apart from others' in pg_stat_activity.
APPLICATION = "broadcaster-conformance"


def database_url() -> str:
    """The test database pytest-django creates and migrates (history table included)."""
    db: dict[str, Any] = settings.DATABASES["default"]
    return f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['TEST']['NAME']}"


class MemoryConformance(conformance.BackendConformance):
    BACKEND = "django_broadcaster.backends.memory.MemoryBackend"
    LOCATION = "conformance"
    RETENTION_OPTIONS = {"HISTORY_SIZE": 5}

    async def break_connection(self) -> None:
        memory.disconnect(self.LOCATION)


class RedisConformance(conformance.BackendConformance):
    BACKEND = "django_broadcaster.backends.redis.RedisBackend"
    LOCATION = settings.REDIS_URL

    async def break_connection(self) -> None:
        """CLIENT KILL every connection named after this test's alias."""
        admin = aioredis.Redis.from_url(self.LOCATION, protocol=2)
        try:
            name = f"django-broadcaster:{self.alias}"
            ours = [c["id"] for c in await admin.client_list() if c["name"] == name]
            self.assertTrue(ours, f"no Redis connection named {name}")
            for client_id in ours:
                await admin.client_kill_filter(_id=client_id)
        finally:
            await admin.connection_pool.disconnect()


class RedisStreamConformance(RedisConformance):
    BACKEND = "django_broadcaster.backends.redis.RedisStreamBackend"
    RETENTION_OPTIONS = {"MAXLEN": 5}

    async def asyncTearDown(self) -> None:
        """Delete this test's streams from the shared Redis."""
        admin = aioredis.Redis.from_url(self.LOCATION, protocol=2)
        try:
            keys = [key async for key in admin.scan_iter(f"{self.key_prefix}:*")]
            if keys:
                await admin.delete(*keys)
        finally:
            await admin.connection_pool.disconnect()
        await super().asyncTearDown()


# The marker makes pytest-django create (and migrate) the test database.
@pytest.mark.django_db
class PostgresConformance(conformance.BackendConformance):
    BACKEND = "django_broadcaster.backends.postgres.PostgresBackend"
    LOCATION = f"{database_url()}?application_name={APPLICATION}"
    RETENTION_OPTIONS = {"HISTORY_SIZE": 5}

    async def break_connection(self) -> None:
        """pg_terminate_backend our sessions, then wait until they are gone."""
        query = (
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s "
            "AND pid <> pg_backend_pid()"
        )
        async with await psycopg.AsyncConnection.connect(database_url(), autocommit=True) as admin:
            ours = [pid for pid, _ in await (await admin.execute(query, (APPLICATION,))).fetchall()]
            self.assertTrue(ours, f"no PostgreSQL session named {APPLICATION}")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + conformance.TIMEOUT
            gone = "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = ANY(%s)"
            while (await (await admin.execute(gone, (ours,))).fetchone()) != (True,):
                if loop.time() > deadline:
                    self.fail(f"sessions {ours} still there after pg_terminate_backend")
                await asyncio.sleep(0.01)


class LoopbackConformance(conformance.BackendConformance):
    """The third-party-style backend of docs/backends/custom.rst."""

    BACKEND = "tests.thirdparty.loopback.LoopbackBackend"
    OPTIONS = {"KEEP": 1000}
    RETENTION_OPTIONS = {"KEEP": 5}

    async def break_connection(self) -> None:
        loopback.disconnect()
