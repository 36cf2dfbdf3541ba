"""The benchmark harness still measures: one quick cell per way an adapter is read.

Each cell runs as ``python -m benchmarks`` runs it (``benchmarks.run_one`` in a
fresh process) against the test servers, and must report a rate with nothing
lost. Not a measurement: a check that the readers, the adapters and the
scenario drivers still fit together.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .support.settings import REDIS_URL

ROOT = Path(__file__).resolve().parent.parent

CELLS = [
    ("django-broadcaster:memory", "one-to-one"),  # our Subscription.__anext__
    ("raw-redis-py", "fan-out-1000"),  # a bare asyncio.Queue
    ("channels-redis-pubsub", "one-to-one"),  # a Channels layer's receive()
    ("django-broadcaster:layer", "worker-queue"),  # receive() on a normal channel
    ("django-broadcaster:redis", "cross-process-latency"),  # a second process
]


@pytest.mark.parametrize(("system", "scenario"), CELLS)
def test_a_quick_cell_reports_a_rate_and_loses_nothing(system: str, scenario: str) -> None:
    env = {**os.environ, "BENCH_REDIS_URL": REDIS_URL}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_one", system, scenario, "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-2000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["note"] == "", result
    assert result["rows"] and all(row["value"] > 0 for row in result["rows"]), result
