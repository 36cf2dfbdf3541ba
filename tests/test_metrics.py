"""Prometheus metrics from ``stats()`` (the real ``prometheus_client``) and the health view."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from django.test import RequestFactory, override_settings
from prometheus_client import CollectorRegistry, generate_latest

from django_broadcaster import broadcasts
from django_broadcaster.health import health
from django_broadcaster.metrics import register
from tests.support.redis_servers import RedisServer
from tests.support.waiting import TIMEOUT, eventually


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
async def two_aliases(redis_server: RedisServer) -> AsyncIterator[None]:
    settings = {
        "default": {"BACKEND": "django_broadcaster.backends.memory.MemoryBackend"},
        "redis": {
            "BACKEND": "django_broadcaster.backends.redis.RedisBackend",
            "LOCATION": redis_server.url,
            "KEY_PREFIX": f"m{uuid.uuid4().hex[:8]}",
            "OPTIONS": {"TIMEOUT": 30, "LIVENESS_INTERVAL": 0.5},
        },
    }
    with override_settings(BROADCAST_BACKENDS=settings):
        try:
            yield
        finally:
            for bus in broadcasts.all():
                await bus.aclose()


def sample(text: str, name: str, alias: str) -> float:
    prefix = f'{name}{{alias="{alias}"}} '
    (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line[len(prefix) :])


async def test_stats_are_exported_per_alias(two_aliases: None) -> None:
    registry = CollectorRegistry()
    register(registry)
    memory, redis = broadcasts["default"], broadcasts["redis"]
    async with memory.subscribe("a") as sub, redis.subscribe("b", "c") as other:
        for n in range(3):
            await memory.apublish("a", n)
        await redis.apublish("b", "x")
        assert [(await sub.get(TIMEOUT)).message for _ in range(3)] == [0, 1, 2]
        assert (await other.get(TIMEOUT)).message == "x"
        text = generate_latest(registry).decode()
        assert sample(text, "django_broadcaster_published_total", "default") == 3
        assert sample(text, "django_broadcaster_received_total", "default") == 3
        assert sample(text, "django_broadcaster_published_total", "redis") == 1
        assert sample(text, "django_broadcaster_subscribers", "redis") == 1
        assert sample(text, "django_broadcaster_upstream_channels", "redis") == 2
        assert sample(text, "django_broadcaster_disconnects_total", "redis") == 0
        assert "# TYPE django_broadcaster_subscribers gauge" in text
        assert "# TYPE django_broadcaster_outage_seconds_total counter" in text
    text = generate_latest(registry).decode()
    assert sample(text, "django_broadcaster_subscribers", "redis") == 0


def test_registering_twice_on_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    register(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        register(registry)


async def check_health() -> tuple[int, dict[str, object]]:
    response = await health(RequestFactory().get("/health"))
    return response.status_code, json.loads(response.content)


async def test_health_is_503_during_an_outage_and_200_after(
    two_aliases: None, redis_server: RedisServer
) -> None:
    redis = broadcasts["redis"]
    async with redis.subscribe("b") as sub:
        assert await check_health() == (
            200,
            {
                "status": "ok",
                "aliases": {
                    "default": {
                        "status": "ok",
                        "disconnects": 0,
                        "reconnects": 0,
                        "outage_seconds": 0.0,
                    },
                    "redis": {
                        "status": "ok",
                        "disconnects": 0,
                        "reconnects": 0,
                        "outage_seconds": 0.0,
                    },
                },
            },
        )
        redis_server.stop()
        await eventually(lambda: redis.stats()["disconnects"] == 1)
        status, body = await check_health()
        assert status == 503 and body["status"] == "outage"
        assert body["aliases"]["redis"]["status"] == "outage"  # type: ignore[index]
        assert body["aliases"]["default"]["status"] == "ok"  # type: ignore[index]
        await asyncio.to_thread(redis_server.start)
        await eventually(lambda: redis.stats()["reconnects"] == 1)
        status, body = await check_health()
        assert status == 200 and body["status"] == "ok"
        await redis.apublish("b", "back")
        assert (await sub.get(TIMEOUT)).message == "back"


async def test_django_health_check_plugin_fails_during_an_outage(
    two_aliases: None, redis_server: RedisServer
) -> None:
    from health_check.views import HealthCheckView

    view = HealthCheckView.as_view(checks=["django_broadcaster.health_check.Broadcast"])
    only_default = HealthCheckView.as_view(
        checks=[("django_broadcaster.health_check.Broadcast", {"alias": "default"})]
    )

    async def check(which: Any) -> tuple[int, dict[str, str]]:
        response = await which(RequestFactory().get("/ht/", HTTP_ACCEPT="application/json"))
        return response.status_code, json.loads(response.content)

    redis = broadcasts["redis"]
    async with redis.subscribe("b"):
        status, body = await check(view)
        assert status == 200, body
        redis_server.stop()
        await eventually(lambda: redis.stats()["disconnects"] == 1)
        status, body = await check(view)
        assert status == 500
        assert list(body.values()) == ["Unavailable: broadcast backend(s) in an outage: 'redis'"]
        assert (await check(only_default))[0] == 200
        await asyncio.to_thread(redis_server.start)
        await eventually(lambda: redis.stats()["reconnects"] == 1)
        assert (await check(view))[0] == 200
