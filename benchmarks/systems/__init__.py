"""The systems under test: name -> adapter factory, interpreter, scenarios supported.

Importing this module must not import any system's library: the registry is
read by the CLI and by ``run_one`` in both virtualenvs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..scenarios import SCENARIOS

#: Worker channels (normal channel names as work queues) exist only in channel layers.
LAYER_ONLY = frozenset({"worker-queue"})
ALL = frozenset(SCENARIOS) - LAYER_ONLY


@dataclass(frozen=True)
class System:
    name: str
    factory: str  # "module:callable" inside benchmarks.systems, returning an Adapter
    scenarios: frozenset[str] = ALL
    python: str = "main"  # "peers": run with benchmarks/.venv-peers (see benchmarks/peers.py)
    baseline: str = "raw-redis-py"  # the bare client its ratios are taken against


#: channels' in-memory layer walks every channel on each receive: quadratic.
SMALL_ONLY = frozenset({"one-to-one", "fan-out-1000", "fan-out-1000-concurrent"})

#: The rows of the cluster systems (they need BENCH_REDIS_CLUSTER_URL).
CLUSTER_ROWS = frozenset({"one-to-one", "fan-out-1000", "concurrent-publish"})

SYSTEMS = [
    System("raw-redis-py", "raw_redis:RawRedis"),
    # pg_notify payloads are limited to 8000 bytes.
    System("raw-psycopg", "raw_psycopg:RawPsycopg", ALL - {"payload-64k"}, baseline="raw-psycopg"),
    System(
        "raw-psycopg-durable",
        "raw_psycopg:RawPsycopgDurable",
        ALL - {"payload-64k"},
        baseline="raw-psycopg",
    ),
    System("encode-broadcaster", "encode_broadcaster:EncodeBroadcaster", python="peers"),
    System("channels-redis-core", "channels_layers:core", ALL | LAYER_ONLY),
    System("channels-redis-pubsub", "channels_layers:pubsub"),
    # Following 10,000 channels (or holding 10,000 idle consumers) is 10,000
    # group_add INSERTs and, to leave, as many DELETEs through Django's ORM: over
    # a minute here, so not measured.
    System(
        "channels-postgres",
        "channels_postgres:postgres",
        ALL - {"many-channels", "idle-subscriber-memory"},
        baseline="raw-psycopg",
    ),
    System("channels-inmemory", "channels_layers:inmemory", SMALL_ONLY),
    # One process by definition: no cross-process scenario.
    System("django-broadcaster:memory", "ours:memory", ALL - {"cross-process-latency"}),
    System("django-broadcaster:redis", "ours:redis"),
    System("django-broadcaster:redis-signed", "ours:redis_signed"),
    System("django-broadcaster:redis-stream", "ours:redis_stream"),
    System("django-broadcaster:postgres", "ours:postgres", baseline="raw-psycopg"),
    System("django-broadcaster:redis-cluster", "ours:redis_cluster", CLUSTER_ROWS),
    System("django-broadcaster:redis-stream-cluster", "ours:redis_stream_cluster", CLUSTER_ROWS),
    System("django-broadcaster:layer", "ours:layer", ALL | LAYER_ONLY),
    System(
        "django-broadcaster:layer-postgres",
        "ours:layer_postgres",
        ALL | LAYER_ONLY,
        baseline="raw-psycopg",
    ),
]

BY_NAME = {system.name: system for system in SYSTEMS}
