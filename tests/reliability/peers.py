"""The other OS processes of the reliability tests.

``python -m tests.reliability.peers publish BACKEND LOCATION KEY_PREFIX CHANNEL TAG COUNT PAUSE``
publishes ``[TAG, 0] .. [TAG, COUNT-1]`` on CHANNEL, one after the other with
PAUSE seconds between them (``TIMEOUT`` 60: a publish rides out a backend
restart), then prints one JSON line ``{"published": COUNT}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys


async def publish(
    backend: str, location: str, prefix: str, channel: str, tag: str, count: int, pause: float
) -> dict[str, object]:
    from django_broadcaster.config import create_broadcast

    bus = create_broadcast(
        "default",
        {
            "BACKEND": backend,
            "LOCATION": location,
            "KEY_PREFIX": prefix,
            "OPTIONS": {"TIMEOUT": 60},
        },
    )
    try:
        for number in range(count):
            await bus.apublish(channel, [tag, number])
            if pause:
                await asyncio.sleep(pause)
    finally:
        await bus.aclose()
    return {"published": count}


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.settings")
    import django

    django.setup()
    command, backend, location, prefix, channel, tag, count, pause = sys.argv[1:]
    assert command == "publish", command
    result = asyncio.run(publish(backend, location, prefix, channel, tag, int(count), float(pause)))
    print(json.dumps(result), flush=True)
