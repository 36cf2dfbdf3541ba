"""The OS processes of the Redis two-process test (tests/test_redis.py).

``python -m tests.support.redis_peer subscribe BACKEND LOCATION KEY_PREFIX COUNT``
subscribes to ``bulk``, prints ``ready``, reads COUNT events and prints one JSON
line; then it returns from ``asyncio.run()`` *with the subscription still open*
and the broadcast not closed, as a careless program would: the process must
still exit promptly (redis-py 8.1 hung there with a Streams reader running).

``python -m tests.support.redis_peer publish BACKEND LOCATION KEY_PREFIX COUNT``
publishes the integers ``0 .. COUNT-1`` on ``bulk``, one after the other.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any


def _bus(backend: str, location: str, prefix: str, count: int) -> Any:
    from django_broadcaster.config import create_broadcast

    return create_broadcast(
        "default",
        {
            "BACKEND": backend,
            "LOCATION": location,
            "KEY_PREFIX": prefix,
            "OPTIONS": {"MAX_QUEUE": count + 1},
        },
    )


async def subscribe(bus: Any, count: int) -> dict[str, object]:
    sub = bus.subscribe("bulk")
    await sub.__aenter__()  # never left: see the module docstring
    print("ready", flush=True)
    received = [(await sub.get(60)).message for _ in range(count)]
    return {
        "received": len(received),
        "in_order": received == list(range(count)),
        "stats": bus.stats(),
    }


async def publish(bus: Any, count: int) -> dict[str, object]:
    try:
        for i in range(count):
            await bus.apublish("bulk", i)
    finally:
        await bus.aclose()
    return {"published": count}


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.settings")
    import django

    django.setup()
    role, backend, location, prefix, number = sys.argv[1:6]
    bus = _bus(backend, location, prefix, int(number))
    run = subscribe if role == "subscribe" else publish
    result = asyncio.run(run(bus, int(number)))
    print(json.dumps(result), flush=True)
