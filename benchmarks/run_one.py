"""Run one scenario for one system in this (fresh) process and print one result line.

    python -m benchmarks.run_one SYSTEM SCENARIO [--quick]

The last line on stdout is ``RESULT {json}`` with either ``rows`` (and a
``note``) or an ``error``. The line is printed before shutting down, so a
process that then hangs at exit still reports its numbers; a watchdog ends it
after EXIT_GRACE seconds with status 3 and says so on stderr.

``--publish-to CHANNEL`` runs the publisher half of cross-process-latency.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import threading
import traceback
from typing import Any

from . import scenarios
from .systems import BY_NAME
from .systems.base import Unavailable

PREFIX = "RESULT "
EXIT_GRACE = 10.0


def make_adapter(system: str) -> Any:
    module, factory = BY_NAME[system].factory.split(":")
    try:
        return getattr(importlib.import_module(f"benchmarks.systems.{module}"), factory)()
    except ImportError as exc:
        raise Unavailable(f"not available: {exc}") from exc


def report(result: dict[str, Any]) -> None:
    print(PREFIX + json.dumps(result), flush=True)
    arm_watchdog()


def arm_watchdog() -> None:
    """From here on the process only shuts down: end it if that takes too long."""

    def hung() -> None:
        print(f"process hung at exit; killed after {EXIT_GRACE:.0f} s", file=sys.stderr, flush=True)
        os._exit(3)

    watchdog = threading.Timer(EXIT_GRACE, hung)
    watchdog.daemon = True
    watchdog.start()


async def measure(adapter: Any, args: argparse.Namespace) -> None:
    budget = scenarios.QUICK if args.quick else scenarios.FULL
    await adapter.start()
    try:
        if args.publish_to:
            await scenarios.latency_publisher(adapter, args.publish_to, args.seconds)
            arm_watchdog()
            return
        extra = (args.system,) if args.scenario == "cross-process-latency" else ()
        result = await scenarios.SCENARIOS[args.scenario](adapter, budget, *extra)
        rows = [
            {"scenario": name, "system": args.system, "value": value, "unit": unit}
            for name, value, unit in result.rows
        ]
        report({"rows": rows, "note": result.note})
    finally:
        await adapter.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_one")
    parser.add_argument("system", choices=sorted(BY_NAME))
    parser.add_argument("scenario", choices=list(scenarios.SCENARIOS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--publish-to", metavar="CHANNEL")
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    try:
        asyncio.run(measure(make_adapter(args.system), args))
    except Unavailable as exc:
        report({"error": str(exc)})
        sys.exit(1)
    except Exception as exc:
        traceback.print_exc()
        report({"error": f"{type(exc).__name__}: {exc}"})
        sys.exit(1)


if __name__ == "__main__":
    main()
