"""The backends the conformance suite runs against, by test id.

Each entry is a ``BROADCAST_BACKENDS`` entry; tests add a unique ``KEY_PREFIX``.
Services are real (Redis, PostgreSQL on loopback): when one is down, its tests
fail; they never skip.
"""

from django.conf import settings

CONFORMANCE_BACKENDS: dict[str, dict[str, object]] = {
    "memory": {
        "BACKEND": "django_broadcaster.backends.memory.MemoryBackend",
        "LOCATION": "conformance",
    },
}

REDIS_URL: str = settings.REDIS_URL
POSTGRES_URL: str = settings.POSTGRES_URL
