"""The other OS process of ``test_two_processes_exchange_events``.

``python -m tests.support.postgres_peer URL KEY_PREFIX COUNT``: subscribes to
``to_child``, prints ``ready``, then publishes COUNT events on ``to_parent``
(in bursts, so they are batched) while reading COUNT events on ``to_child``;
prints one JSON line with what it received and exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys


async def main(url: str, prefix: str, count: int) -> dict[str, object]:
    from django_broadcaster.config import create_broadcast

    bus = create_broadcast(
        "default",
        {
            "BACKEND": "django_broadcaster.backends.postgres.PostgresBackend",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
            "OPTIONS": {"MAX_QUEUE": count + 1},
        },
    )
    try:
        async with bus.subscribe("to_child") as sub:
            print("ready", flush=True)

            async def send() -> None:
                for start in range(0, count, 50):
                    burst = range(start, min(start + 50, count))
                    await asyncio.gather(*(bus.apublish("to_parent", i) for i in burst))

            sender = asyncio.ensure_future(send())
            received = [(await sub.get(60)).message for _ in range(count)]
            await sender
    finally:
        await bus.aclose()
    return {"in_order": received == list(range(count)), "received": len(received)}


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.settings")
    import django

    django.setup()
    result = asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    print(json.dumps(result), flush=True)
