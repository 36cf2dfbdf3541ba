"""``django_broadcaster.loops``: the one module touching asgiref internals.

``on_throwaway_loop()`` relies on ``AsyncToSync.loop_thread_executors``; every
asgiref release listed in ``TESTED_ASGIREF`` is installed into a scratch
directory and checked in a fresh interpreter, and the installed asgiref must be
one of them, so an upgrade is noticed here before it misroutes calls.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from importlib.metadata import version
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync

from django_broadcaster import loops

#: asgiref releases whose internals ``loops.on_throwaway_loop`` is known to read right.
TESTED_ASGIREF = ("3.8.1", "3.9.2", "3.10.0", "3.11.1", "3.12.1", "3.13.0")

PROBE = """
import asyncio, threading
from asgiref.sync import async_to_sync
from django_broadcaster import loops

async def probe():
    return loops.on_throwaway_loop()

seen = {}
def in_thread():
    seen["thread"] = async_to_sync(probe)()
t = threading.Thread(target=in_thread); t.start(); t.join()
seen["asyncio.run"] = asyncio.run(probe())
async def where():
    return asyncio.get_running_loop()
async def lasting():
    return await loops.on_lasting_loop(where())
def routed():
    seen["routed"] = async_to_sync(lasting)() is loops.bridge_loop()
t = threading.Thread(target=routed); t.start(); t.join()
print(seen)
"""


def test_installed_asgiref_is_a_tested_release() -> None:
    installed = version("asgiref")
    minors = {v.rsplit(".", 1)[0] for v in TESTED_ASGIREF}
    assert installed.rsplit(".", 1)[0] in minors, (
        f"asgiref {installed} is not among the tested releases {TESTED_ASGIREF}: check "
        "that AsyncToSync.loop_thread_executors still exists, then add it to TESTED_ASGIREF"
    )


@pytest.fixture(scope="session")
def asgiref_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("asgiref")


@pytest.mark.parametrize("release", TESTED_ASGIREF)
def test_throwaway_loops_are_recognised(release: str, asgiref_dir: Path) -> None:
    target = asgiref_dir / release
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "--no-deps", "--target", str(target), f"asgiref=={release}"],
        check=True,
        capture_output=True,
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={"PYTHONPATH": f"{target}:{root}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'thread': True, 'asyncio.run': False, 'routed': True}"


def test_per_loop_values_of_closed_loops_are_dropped() -> None:
    made: list[object] = []
    per_loop: loops.PerLoop[object] = loops.PerLoop(lambda loop: made.append(loop) or loop)

    async def value() -> object:
        return per_loop.get()

    first = asyncio.run(value())
    assert asyncio.run(value()) is not first
    assert len(per_loop.values()) == 1  # the first loop's value went with its loop
    assert len(made) == 2


def test_sync_calls_share_the_bridge_loop() -> None:
    async def current() -> object:
        return loops.running_loop()

    seen = []
    threads = [threading.Thread(target=lambda: seen.append(loops.run(current()))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [loops.bridge_loop()] * 3
    assert async_to_sync(current)() is not loops.bridge_loop()
