"""The other OS processes of the reliability tests.

``python -m tests.reliability.peers publish BACKEND LOCATION KEY_PREFIX CHANNEL
TAG COUNT PAUSE [OPTIONS]`` publishes ``[TAG, 0] .. [TAG, COUNT-1]`` on CHANNEL,
one after the other with PAUSE seconds between them, then prints one JSON
line ``{"published": COUNT}``.

``python -m tests.reliability.peers subscribe BACKEND LOCATION KEY_PREFIX CHANNEL
ALIAS TAGS COUNT [OPTIONS]`` subscribes to CHANNEL under the alias ALIAS (its
connections' name), prints ``ready``, and reads ``[tag, n]`` events until it
has ``[tag, COUNT-1]`` of every tag of TAGS (comma-separated), or none came for
`IDLE` seconds; then prints one JSON line: the numbers received per tag, in
order, and ``stats()``.

OPTIONS is a JSON object of extra ``OPTIONS``. ``TIMEOUT`` is 60 in both: a
publish rides out a backend restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

#: A subscriber gives up after this many seconds without an event.
IDLE = 20.0


def _bus(alias: str, backend: str, location: str, prefix: str, options: dict[str, Any]) -> Any:
    from django_broadcaster.config import create_broadcast

    return create_broadcast(
        alias,
        {
            "BACKEND": backend,
            "LOCATION": location,
            "KEY_PREFIX": prefix,
            "OPTIONS": {"TIMEOUT": 60, **options},
        },
    )


async def publish(bus: Any, channel: str, tag: str, count: int, pause: float) -> dict[str, object]:
    try:
        for number in range(count):
            await bus.apublish(channel, [tag, number])
            if pause:
                await asyncio.sleep(pause)
    finally:
        await bus.aclose()
    return {"published": count}


async def subscribe(bus: Any, channel: str, tags: list[str], count: int) -> dict[str, object]:
    received: dict[str, list[int]] = {tag: [] for tag in tags}
    waiting = set(tags)
    try:
        async with bus.subscribe(channel) as sub:
            print("ready", flush=True)
            while waiting:
                try:
                    event = await sub.get(IDLE)
                except asyncio.TimeoutError:
                    break
                tag, number = event.message
                received[tag].append(number)
                if number == count - 1:
                    waiting.discard(tag)
        stats = bus.stats()
    finally:
        await bus.aclose()
    return {"received": received, "stats": stats}


async def main(argv: list[str]) -> dict[str, object]:
    command, backend, location, prefix, channel = argv[:5]
    rest = argv[5:]
    if command == "publish":
        tag, count, pause, *extra = rest
        options = json.loads(extra[0]) if extra else {}
        bus = _bus("default", backend, location, prefix, options)
        return await publish(bus, channel, tag, int(count), float(pause))
    assert command == "subscribe", command
    alias, tags, count, *extra = rest
    options = json.loads(extra[0]) if extra else {}
    bus = _bus(alias, backend, location, prefix, {"MAX_QUEUE": 1_000_000, **options})
    return await subscribe(bus, channel, tags.split(","), int(count))


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.settings")
    import django

    django.setup()
    print(json.dumps(asyncio.run(main(sys.argv[1:]))), flush=True)
