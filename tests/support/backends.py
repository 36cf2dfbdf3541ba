"""The backends the parametrized tests (fixtures ``backend_name`` and ``bus`` of
conftest.py) run against, by test id.

Each entry is a ``BROADCAST_BACKENDS`` entry; tests add a unique ``KEY_PREFIX``.
Services are real (Redis, PostgreSQL on loopback): when one is down, its tests
fail; they never skip.
"""

import uuid

from django.conf import settings

from django_broadcaster import Broadcast
from django_broadcaster.config import create_broadcast

CONFORMANCE_BACKENDS: dict[str, dict[str, object]] = {
    "redis": {
        "BACKEND": "django_broadcaster.backends.redis.RedisBackend",
        "LOCATION": settings.REDIS_URL,
    },
    "redis-stream": {
        "BACKEND": "django_broadcaster.backends.redis.RedisStreamBackend",
        "LOCATION": settings.REDIS_URL,
    },
    "memory": {
        "BACKEND": "django_broadcaster.backends.memory.MemoryBackend",
        "LOCATION": "conformance",
    },
    "postgres": {
        "BACKEND": "django_broadcaster.backends.postgres.PostgresBackend",
        # The test database (pytest-django creates and migrates it).
        "LOCATION": "default",
    },
}

REDIS_URL: str = settings.REDIS_URL
POSTGRES_URL: str = settings.POSTGRES_URL


def make_bus(name: str, **overrides: object) -> Broadcast:
    """A fresh `Broadcast` on backend ``name`` with its own KEY_PREFIX."""
    entry = {**CONFORMANCE_BACKENDS[name], "KEY_PREFIX": f"t{uuid.uuid4().hex[:12]}"}
    options = {**entry.get("OPTIONS", {}), **overrides.pop("OPTIONS", {})}  # type: ignore[dict-item]
    entry.update(overrides, OPTIONS=options)
    return create_broadcast("default", entry)
