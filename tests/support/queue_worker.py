"""A ``runworker``-style process for tests/test_worker_queues.py.

``python -m tests.support.queue_worker '<BROADCAST_BACKENDS entry as JSON>' CHANNEL``
receives on normal channel CHANNEL through `BroadcastChannelLayer`, prints
``ready`` once it is about to receive, then each message's ``n`` as it finishes
it (after ``work`` seconds of pretend work), and stops at a ``{"type": "stop"}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys


async def work(entry: dict[str, object], channel: str) -> None:
    from django_broadcaster.config import create_broadcast
    from django_broadcaster.layers import BroadcastChannelLayer

    front = create_broadcast("default", entry)
    layer = BroadcastChannelLayer(using=front)
    print("ready", flush=True)
    try:
        while True:
            message = await layer.receive(channel)
            if message["type"] == "stop":
                return
            await asyncio.sleep(message.get("work", 0))
            print(message["n"], flush=True)
    finally:
        await layer.close()
        await front.aclose()


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.support.settings")
    import django

    django.setup()
    asyncio.run(work(json.loads(sys.argv[1]), sys.argv[2]))


if __name__ == "__main__":
    main()
