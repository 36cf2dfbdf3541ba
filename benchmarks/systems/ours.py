"""django-broadcaster, through its public API only, on each shipped backend and as a layer."""

from __future__ import annotations

from operator import attrgetter
from typing import Any
from urllib.parse import urlsplit

from ..scenarios import Receiver
from .base import POSTGRES_URL, REDIS_CLUSTER_URL, REDIS_URL, Adapter, Unavailable
from .channels_layers import CAPACITY, ChannelLayerAdapter

BACKENDS = "django_broadcaster.backends."
# Deep enough that no scenario makes a subscriber lag.
OPTIONS: dict[str, Any] = {"MAX_QUEUE": 100_000}
#: OPTIONS["SIGNING_KEYS"] of the "-signed" rows (a benchmark-only secret).
SIGNED = {**OPTIONS, "SIGNING_KEYS": ["benchmark-signing-key-0123456789"]}


def database(url: str = POSTGRES_URL) -> dict[str, str]:
    """DATABASES entry for the benchmark database, so ``migrate`` creates the tables."""
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


def _configure(
    backend: str,
    location: str | None,
    database: dict[str, str] | None = None,
    options: dict[str, Any] = OPTIONS,
) -> Any:
    """Set up Django with one broadcast alias, "default"; return ``broadcasts["default"]``."""
    try:
        import django
        from django.conf import settings

        conf: dict[str, Any] = {"BACKEND": BACKENDS + backend, "OPTIONS": options}
        if location:
            conf["LOCATION"] = location
        settings.configure(
            INSTALLED_APPS=["django_broadcaster"],
            BROADCAST_BACKENDS={"default": conf},
            DATABASES={"default": database} if database else {},
            USE_TZ=True,
            # As in any Django project: PostgreSQL's notifications carry small events
            # only under a key derived from it.
            SECRET_KEY="benchmarks",
        )
        django.setup()
        if database:
            from django.core.management import call_command

            call_command("migrate", verbosity=0)
        from django_broadcaster import broadcasts

        return broadcasts["default"]
    except Exception as exc:
        raise Unavailable(f"not available: {type(exc).__name__}: {exc}") from exc


class Ours(Adapter):
    def __init__(self, backend: Any) -> None:
        self.backend = backend

    async def publish(self, channel: str, payload: str) -> None:
        await self.backend.apublish(channel, payload)

    def subscribe(self, channel: str) -> Any:
        return self.backend.subscribe(channel)

    def receiver(self, handle: Any) -> Receiver:
        return aiter(handle).__anext__, attrgetter("message")

    async def close(self) -> None:
        await self.backend.aclose()


def memory() -> Adapter:
    return Ours(_configure("memory.MemoryBackend", None))


def redis() -> Adapter:
    return Ours(_configure("redis.RedisBackend", REDIS_URL))


def redis_signed() -> Adapter:
    """Redis pub/sub with ``OPTIONS["SIGNING_KEYS"]``: every event signed and verified."""
    return Ours(_configure("redis.RedisBackend", REDIS_URL, options=SIGNED))


def redis_stream() -> Adapter:
    return Ours(_configure("redis.RedisStreamBackend", REDIS_URL))


def _cluster(backend: str) -> Adapter:
    if not REDIS_CLUSTER_URL:
        raise Unavailable("not available: set BENCH_REDIS_CLUSTER_URL to a Redis Cluster node")
    return Ours(_configure(backend, REDIS_CLUSTER_URL, options={**OPTIONS, "CLUSTER": True}))


def redis_cluster() -> Adapter:
    """Redis pub/sub on Redis Cluster (sharded pub/sub)."""
    return _cluster("redis.RedisBackend")


def redis_stream_cluster() -> Adapter:
    """Redis Streams on Redis Cluster."""
    return _cluster("redis.RedisStreamBackend")


async def delete_run_rows() -> None:
    """Delete this run's events (as raw-psycopg-durable does its own), so the history
    table stays as small for every run instead of growing with each one."""
    import psycopg

    from ..scenarios import channel_name

    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        await conn.execute(
            "DELETE FROM django_broadcaster_event WHERE channel LIKE %s",
            ("%" + channel_name("") + "%",),
        )


class OursPostgres(Ours):
    async def close(self) -> None:
        await super().close()
        await delete_run_rows()


class LayerPostgres(ChannelLayerAdapter):
    async def close(self) -> None:
        await super().close()
        await delete_run_rows()


def postgres() -> Adapter:
    return OursPostgres(_configure("postgres.PostgresBackend", POSTGRES_URL, database()))


def _layer(adapter: type[ChannelLayerAdapter] = ChannelLayerAdapter) -> Adapter:
    from django_broadcaster.layers import BroadcastChannelLayer  # ImportError: "not available"

    # As for channels-redis-core: a capacity no scenario reaches (full channels drop).
    return adapter(BroadcastChannelLayer(using="default", capacity=CAPACITY), "close")


def layer() -> Adapter:
    """Our channel layer over the Redis pub/sub backend."""
    _configure("redis.RedisBackend", REDIS_URL)
    return _layer()


def layer_postgres() -> Adapter:
    """Our channel layer over the PostgreSQL backend."""
    _configure("postgres.PostgresBackend", POSTGRES_URL, database())
    return _layer(LayerPostgres)
