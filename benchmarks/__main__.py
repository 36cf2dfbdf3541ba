"""python -m benchmarks [--quick] [--json PATH] [--only SYSTEM] [--scenario SCENARIO] [--repeat N]

Runs every scenario for every system that supports it, each in a fresh
process (``benchmarks.run_one``) with a timeout, then prints one table (with
``--repeat N``: N rounds of every cell, the median and the min and max of each
row, and each target's ratio taken round by round), the targets of issue 16
and the cells that failed. A failed cell never stops the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from . import peers
from .run_one import PREFIX
from .scenarios import SCENARIOS
from .systems import SYSTEMS, System
from .systems.base import POSTGRES_URL, REDIS_URL

# Row names in table order: cross-process-latency reports two rows.
ROW_SCENARIOS = [
    *("one-to-one", "concurrent-publish", "fan-out-1000", "fan-out-1000-concurrent"),
    "many-channels",
    "worker-queue",
    *("cross-process-latency-p50", "cross-process-latency-p99"),
    *("idle-subscriber-memory", "payload-64k"),
]
OURS = "django-broadcaster:"


@dataclass
class Cell:
    system: System
    scenario: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    error: str = ""
    seconds: float = 0.0
    # With --repeat: each round's value of each row (None where that run failed).
    rounds: dict[str, list[float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """``scenario`` of ``system`` must be at least (or at most) ``factor`` x the reference.

    The reference is another row of the same run, or an absolute number when
    ``reference`` is None.
    """

    scenario: str
    system: str
    at_least: bool
    factor: float
    reference: str | None = None
    reference_scenario: str | None = None  # default: the same scenario

    def describe(self) -> str:
        sign = ">=" if self.at_least else "<="
        if self.reference is None:
            return f"{self.scenario}: {self.system} {sign} {self.factor:g}"
        where = f" {self.reference_scenario}" if self.reference_scenario else ""
        return f"{self.scenario}: {self.system} {sign} {self.factor:g} x {self.reference}{where}"


# The targets of issue 16, checked on ratios within this run.
TARGETS = [
    Target("payload-64k", OURS + "redis", True, 1.0, "raw-redis-py"),
    Target("one-to-one", OURS + "redis", True, 1.0, "raw-redis-py"),
    Target("one-to-one", OURS + "redis", True, 1.2, "encode-broadcaster"),
    Target("fan-out-1000-concurrent", OURS + "redis", True, 0.8, OURS + "memory", "fan-out-1000"),
    Target("fan-out-1000-concurrent", OURS + "redis", True, 4.0, "encode-broadcaster"),
    Target("fan-out-1000", OURS + "layer", True, 0.8, OURS + "redis"),
    Target("fan-out-1000", OURS + "layer", True, 2.0, "channels-redis-pubsub"),
    Target("many-channels", OURS + "redis-stream", True, 0.67, OURS + "redis-stream", "one-to-one"),
    Target("one-to-one", OURS + "postgres", True, 0.9, "raw-psycopg-durable"),
    Target("worker-queue", OURS + "layer", True, 3.0, "channels-redis-core"),
    Target("fan-out-1000", OURS + "layer-postgres", True, 2.0, "channels-postgres"),
    *(
        Target("idle-subscriber-memory", OURS + name, False, 1536)
        for name in ("memory", "redis", "redis-stream", "postgres", "layer")
    ),
    *(
        Target("cross-process-latency-p99", OURS + name, False, 2.0)
        for name in ("redis", "redis-stream", "postgres", "layer")
    ),
]


def run_cell(system: System, scenario: str, quick: bool, timeout: float, python: str) -> Cell:
    """Run ``benchmarks.run_one`` in its own process group; kill the group on timeout."""
    cell = Cell(system, scenario)
    command = [python, "-m", "benchmarks.run_one", system.name, scenario]
    if quick:
        command.append("--quick")
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        timed_out = True
    cell.seconds = time.perf_counter() - started
    results = [
        json.loads(line[len(PREFIX) :]) for line in stdout.splitlines() if line.startswith(PREFIX)
    ]
    measured = [result for result in results if "rows" in result]
    errors = [result["error"] for result in results if "error" in result]
    notes = []
    if measured:
        cell.rows = measured[0]["rows"]
        notes.append(measured[0]["note"])
        notes.extend(f"then: {error}" for error in errors)
    elif errors:
        cell.error = errors[0]
    elif timed_out:
        cell.error = f"timed out after {timeout:g} s"
    else:
        last = [line for line in stderr.splitlines() if line.strip()][-1:] or [""]
        cell.error = f"exited with status {process.returncode} {last[0]}".strip()
    if "hung at exit" in stderr:
        notes.append("hung at exit (killed)")
    elif timed_out and measured:
        notes.append(f"did not exit within {timeout:g} s (killed)")
    cell.note = "; ".join(note for note in notes if note)
    return cell


def combine(runs: list[Cell]) -> Cell:
    """One cell from the runs of a cell in every round: the median of each row, its
    min and max, and each round's value (for ratios taken round by round)."""
    measured = [run for run in runs if not run.error]
    if len(runs) == 1 or not measured:
        return runs[0]
    first = runs[0]
    cell = Cell(first.system, first.scenario, seconds=sum(run.seconds for run in runs))
    for i, row in enumerate(measured[0].rows):
        values = [run.rows[i]["value"] for run in measured]
        cell.rows.append(
            {**row, "value": statistics.median(values), "min": min(values), "max": max(values)}
        )
        cell.rounds[row["scenario"]] = [None if run.error else run.rows[i]["value"] for run in runs]
    notes = {run.note for run in measured if run.note}
    failures = len(runs) - len(measured)
    if failures:
        error = next(run.error for run in runs if run.error)
        notes.add(f"{failures} of {len(runs)} runs failed: {error}")
    cell.note = "; ".join(sorted(notes))
    return cell


def format_value(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def print_table(cells: list[Cell]) -> None:
    rows = {(row["scenario"], row["system"]): row for cell in cells for row in cell.rows}
    notes = {(row["scenario"], row["system"]): cell.note for cell in cells for row in cell.rows}
    spread = any("min" in row for row in rows.values())
    header = ("scenario", "system", "value", "min", "max", "unit", "÷ raw", "note")
    lines = []
    for scenario in ROW_SCENARIOS:
        for system in SYSTEMS:
            row = rows.get((scenario, system.name))
            if row is None:
                continue
            baseline = rows.get((scenario, system.baseline))
            ratio = f"{row['value'] / baseline['value']:.2f}" if baseline else "-"
            unit = row["unit"]
            value = format_value(row["value"], unit)
            low = format_value(row["min"], unit) if "min" in row else ""
            high = format_value(row["max"], unit) if "max" in row else ""
            note = notes[(scenario, system.name)]
            lines.append((scenario, system.name, value, low, high, unit, ratio, note))
    if not spread:  # one run per cell: no min and max columns
        header = header[:3] + header[5:]
        lines = [line[:3] + line[5:] for line in lines]
    numeric = {2, len(header) - 2, *((3, 4) if spread else ())}
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    previous = None
    for line in [header, *lines]:
        shown = list(line)
        if line[0] == previous:
            shown[0] = ""  # print each scenario name once
        previous = line[0]
        print(
            "  ".join(
                text.rjust(width) if i in numeric else text.ljust(width)
                for i, (text, width) in enumerate(zip(shown, widths, strict=True))
            ).rstrip()
        )
    print(
        "\n÷ raw: the value divided by the bare client of the same engine in the same scenario"
        " (raw-psycopg for PostgreSQL systems, raw-redis-py for the others)."
    )
    if spread:
        wide = [
            f"{row['scenario']} / {row['system']} ({row['max'] / row['min']:.2f}x)"
            for row in rows.values()
            if row.get("min", 0) > 0 and row["max"] > row["min"] * 1.15
        ]
        print(f"Rows whose runs differ by more than 15%: {', '.join(wide) or 'none'}.")


def print_targets(cells: list[Cell]) -> None:
    """Check the targets whose cells were part of this run (all of them without filters)."""
    values = {(row["scenario"], row["system"]): row["value"] for cell in cells for row in cell.rows}
    rounds = {
        (scenario, cell.system.name): values
        for cell in cells
        for scenario, values in cell.rounds.items()
    }
    planned = {(cell.scenario, cell.system.name) for cell in cells}
    targets = [
        target
        for target in TARGETS
        if any(
            target.scenario.startswith(scenario) and target.system == system
            for scenario, system in planned
        )
    ]
    if targets:
        print("\nTargets (issue 16)")
    for target in targets:
        value = values.get((target.scenario, target.system))
        if target.reference is None:
            reference: float | None = 1.0
        else:
            reference = values.get((target.reference_scenario or target.scenario, target.reference))
        if value is None or reference is None:
            print(f"  n/a   {target.describe()}: not measured")
            continue
        ratio, spread = value / reference, ""
        if target.reference is not None:
            reference_rounds = rounds.get(
                (target.reference_scenario or target.scenario, target.reference), []
            )
            ratios = [
                mine / theirs
                for mine, theirs in zip(
                    rounds.get((target.scenario, target.system), []), reference_rounds, strict=False
                )
                if mine is not None and theirs
            ]
            if len(ratios) > 1:  # the median of the rounds' ratios, and their range
                ratio = statistics.median(ratios)
                spread = f" (rounds {min(ratios):,.2f}-{max(ratios):,.2f})"
        met = ratio >= target.factor if target.at_least else ratio <= target.factor
        shown = f"{ratio:,.2f} x{spread}" if target.reference else f"{value:,.2f}"
        print(f"  {'ok  ' if met else 'MISS'}  {target.describe()}: {shown}")


def print_failures(failed: list[Cell]) -> None:
    """One line per system and error, listing the scenarios it hit."""
    if not failed:
        return
    print(f"\nFailed cells ({len(failed)})")
    grouped: dict[tuple[str, str], list[str]] = {}
    for cell in failed:
        grouped.setdefault((cell.system.name, cell.error), []).append(cell.scenario)
    for (system, error), scenarios in grouped.items():
        print(f"  {system} [{', '.join(scenarios)}]: {error}")


def machine() -> dict[str, str]:
    """What the numbers were measured on, for the table header and docs/performance."""
    info = {
        "python": platform.python_version(),
        "cores": str(os.cpu_count()),
        "load average": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            models = [
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            ]
        info["cpu"] = models[0]
    except (OSError, IndexError):
        info["cpu"] = platform.processor()
    try:
        import redis

        info["redis-py"] = redis.__version__
        client = redis.Redis.from_url(REDIS_URL)
        info["redis"] = client.info("server")["redis_version"]
        client.close()
    except Exception as exc:
        info["redis"] = f"unreachable ({type(exc).__name__})"
    try:
        import psycopg

        info["psycopg"] = psycopg.__version__
        with psycopg.connect(POSTGRES_URL) as connection:
            info["postgresql"] = connection.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:
        info["postgresql"] = f"unreachable ({type(exc).__name__})"
    return info


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="django-broadcaster and its peers side by side, one fresh process per cell.",
    )
    parser.add_argument("--quick", action="store_true", help="short runs: a few minutes in all")
    parser.add_argument("--json", metavar="PATH", help='also write {"rows": [...]} to PATH')
    parser.add_argument("--only", metavar="SYSTEM", help="systems whose name has this; a,b: any")
    parser.add_argument("--scenario", help="scenarios whose name has this; a,b: any")
    parser.add_argument("--repeat", type=int, default=1, help="N rounds of every cell; medians")
    parser.add_argument("--timeout", type=float, help="seconds per run (60 quick, 600 full)")
    args = parser.parse_args()
    args.timeout = args.timeout or (60.0 if args.quick else 600.0)

    def chosen(name: str, wanted: str | None) -> bool:
        return not wanted or any(part in name for part in wanted.split(","))

    systems = [s for s in SYSTEMS if chosen(s.name, args.only)]
    scenarios = [s for s in SCENARIOS if chosen(s, args.scenario)]
    plan = [(sc, sy) for sc in scenarios for sy in systems if sc in sy.scenarios]
    if not plan:
        parser.error("nothing to run: no system/scenario matches")

    info = machine()
    print("machine: " + ", ".join(f"{key} {value}" for key, value in info.items()))
    print(f"mode: {'quick' if args.quick else 'full'}; servers: Redis {REDIS_URL}, {POSTGRES_URL}")

    pythons = {"main": sys.executable}
    peers_error = ""
    if any(system.python == "peers" for _, system in plan):
        print(peers.WHY)
        try:
            pythons["peers"] = str(peers.ensure())
        except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
            peers_error = f"not available: cannot set up {peers.VENV.name}: {exc}"
    print(flush=True)

    # Round by round (every cell once, then again), so that a burst of load on a
    # shared machine hits the systems compared in one round alike.
    runs: dict[tuple[str, str], list[Cell]] = {}
    started = time.perf_counter()
    for round_number in range(1, args.repeat + 1):
        for number, (scenario, system) in enumerate(plan, 1):
            if system.python in pythons:
                run = run_cell(system, scenario, args.quick, args.timeout, pythons[system.python])
            else:
                run = Cell(system, scenario, error=peers_error)
            runs.setdefault((scenario, system.name), []).append(run)
            outcome = run.error or ", ".join(
                f"{format_value(row['value'], row['unit'])} {row['unit']}" for row in run.rows
            )
            where = f"{number}/{len(plan)}" + (f", round {round_number}" if args.repeat > 1 else "")
            print(
                f"[{where}] {scenario} / {system.name}: {outcome} ({run.seconds:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    cells = [combine(cell_runs) for cell_runs in runs.values()]
    elapsed = time.perf_counter() - started

    print_table(cells)
    print_targets(cells)
    failed = [cell for cell in cells if cell.error]
    print_failures(failed)
    load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print(f"\n{len(plan)} cells in {elapsed:.1f} s; load average now {load}")

    if args.json:
        document = {
            "rows": [row for cell in cells for row in cell.rows],
            "failed": [
                {"scenario": c.scenario, "system": c.system.name, "error": c.error} for c in failed
            ],
            "machine": info,
            "mode": "quick" if args.quick else "full",
        }
        with open(args.json, "w") as output:
            json.dump(document, output, indent=2)
            output.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
