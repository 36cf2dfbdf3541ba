"""Running ``python -m django broadcast ...`` as a real subprocess for the command tests."""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def private_database(admin_url: str) -> Iterator[str]:
    """A PostgreSQL database of our own, migrated (so PostgresBackend's history table
    exists), dropped afterwards; yields its URL.

    Subprocesses then never hold connections to pytest-django's test database
    (which would stop it being dropped), nor lose theirs when another test run
    recreates it.
    """
    name = f"broadcaster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        env = command_env({})
        del env["BROADCASTER_TEST_BACKENDS"]  # the default memory backend
        env["BROADCASTER_TEST_DATABASE"] = name
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "django_broadcaster", "-v", "0"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=True,
        )
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def command_env(backends: dict[str, Any]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_COLORS")}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.support.command_settings",
        BROADCASTER_TEST_BACKENDS=json.dumps(backends),
        PYTHONUNBUFFERED="1",
    )
    return env


def argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", "broadcast", *args]


def run(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv(*args),
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Tail:
    """``broadcast tail ...`` running in the background; stdout and stderr read by threads."""

    def __init__(self, env: dict[str, str], *args: str, pump_stdout: bool = True) -> None:
        self.process = subprocess.Popen(
            argv("tail", *args),
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        self.stderr_lines: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        pumps = [(self.process.stderr, self.stderr)]
        if pump_stdout:
            pumps.append((self.process.stdout, self.stdout))
        for stream, lines in pumps:
            threading.Thread(target=_pump, args=(stream, lines), daemon=True).start()

    def wait_ready(self, timeout: float = 30) -> str:
        """The "Tailing ..." notice, written once the subscription is in place."""
        line = self.stderr.get(timeout=timeout)
        self.stderr_lines.append(line)
        assert line.startswith("Tailing "), line
        return line

    def line(self, timeout: float = 15) -> str:
        return self.stdout.get(timeout=timeout).rstrip("\n")

    def read_stdout_line(self, timeout: float = 15) -> str:
        """Read a line from stdout in this thread (with ``pump_stdout=False``), so that
        this thread can also close it."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, "no output"
        return self.process.stdout.readline().rstrip("\n")

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 15) -> tuple[int, float]:
        """Exit status and seconds it took to exit."""
        started = time.monotonic()
        code = self.process.wait(timeout)
        return code, time.monotonic() - started

    def rest_of_stderr(self) -> str:
        self.process.wait(15)
        time.sleep(0.05)
        while True:
            try:
                self.stderr_lines.append(self.stderr.get_nowait())
            except queue.Empty:
                return "".join(self.stderr_lines)

    def rest_of_stdout(self) -> list[str]:
        self.process.wait(15)
        time.sleep(0.05)
        lines = []
        while True:
            try:
                lines.append(self.stdout.get_nowait().rstrip("\n"))
            except queue.Empty:
                return lines

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _pump(stream: Any, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)
