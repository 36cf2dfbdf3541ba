"""python -m benchmarks.budget [--profile]: django-broadcaster's cost per event, in µs.

Each part runs in a fresh process (Django is configured once per process):

* ``publish``: client CPU of one ``apublish`` on Redis pub/sub, awaited one at
  a time and 5,000 at once (one pipeline);
* ``decode``: the hub's ``Decoder.decode`` of a 64-byte JSON string;
* ``fan-out``: wall time per delivery of ``fan-out-1000`` (1,000 messages,
  one publisher) through the bus (``django-broadcaster:redis``) and through the
  channel layer on it (``django-broadcaster:layer``); their difference is the
  layer's hop. With ``--profile`` the measured phase also runs under cProfile
  and the functions taking the most time are printed (profiled times are
  several times the real ones; read them as shares).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import subprocess
import sys
import time
import timeit
from typing import Any

from . import scenarios
from .run_one import make_adapter

BUS, LAYER = "django-broadcaster:redis", "django-broadcaster:layer"
MESSAGES = 1000
PUBLISHES = 5000
BODY = scenarios.payload(scenarios.MESSAGE)


async def publish_and_decode() -> None:
    adapter = make_adapter(BUS)
    await adapter.start()
    bus = adapter.backend
    for _ in range(500):  # connections open, code warm
        await bus.apublish("budget", BODY)
    started = time.process_time()
    for _ in range(PUBLISHES):
        await bus.apublish("budget", BODY)
    awaited = (time.process_time() - started) / PUBLISHES
    started = time.process_time()
    await asyncio.gather(*(bus.apublish("budget", BODY) for _ in range(PUBLISHES)))
    batched = (time.process_time() - started) / PUBLISHES
    await adapter.close()
    print(f"publish: {awaited * 1e6:.1f} µs CPU awaited, {batched * 1e6:.1f} µs CPU batched")

    from django_broadcaster.serializers import get_serializer
    from django_broadcaster.signing import Decoder

    serializer = get_serializer("json")
    decoder, payload = Decoder("budget", serializer, None), serializer.dumps(BODY)
    runs = timeit.repeat(lambda: decoder.decode("budget", payload, None), number=100_000, repeat=5)
    print(f"decode: {min(runs) / 100_000 * 1e6:.2f} µs per event")


async def fan_out(system: str, profile: bool) -> None:
    adapter = make_adapter(system)
    await adapter.start()
    profiler = cProfile.Profile()
    budget = scenarios.Budget(60.0, 0, MESSAGES, 0, 0.0, 0, 60.0)
    warm_up = scenarios.warm_up

    async def warm_up_then_profile(*args: Any) -> None:
        await warm_up(*args)
        if profile:
            profiler.enable()

    scenarios.warm_up = warm_up_then_profile
    try:
        rate, note = await scenarios.throughput(
            adapter, budget, cap=MESSAGES, subscribers=scenarios.FAN_OUT
        )
    finally:
        profiler.disable()
        await adapter.close()
    print(f"fan-out {system}: {1e6 / rate:.2f} µs per delivery ({rate:,.0f}/s) {note}".rstrip())
    if profile:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
        stats.print_stats(r"django_broadcaster|asyncio", 25)
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.budget")
    parser.add_argument("--profile", action="store_true", help="also profile the fan-out runs")
    parser.add_argument("--part", choices=["publish", BUS, LAYER], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "publish":
        asyncio.run(publish_and_decode())
    elif args.part:
        asyncio.run(fan_out(args.part, args.profile))
    else:
        for part in ("publish", BUS, LAYER):
            command = [sys.executable, "-m", "benchmarks.budget", "--part", part]
            subprocess.run(command + (["--profile"] if args.profile else []), check=False)


if __name__ == "__main__":
    main()
