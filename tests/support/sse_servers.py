"""Real ASGI servers for the SSE tests, serving tests/support/sse_asgi.py.

`UvicornThread` runs uvicorn in a thread of the test process (settings come
from the process, overridden by the fixture); `DaphneProcess` runs Daphne in a
subprocess with ``tests.support.command_settings`` and ``BROADCASTER_TEST_BACKENDS``.
Both listen on a socket bound here to a free loopback port, so there is no
race for the port, and both stop only what they started.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import uvicorn

from .servers import wait_until_serving

REPO = Path(__file__).resolve().parents[2]


def rss(pid: int) -> int:
    """The resident memory of process ``pid``, in bytes (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def _listener() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    return listener


class UvicornThread:
    name = "uvicorn"

    def __init__(self, app: str = "tests.support.sse_asgi:application") -> None:
        self.app = app
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process: this one."""
        return os.getpid()

    def start(self, backends: dict[str, Any]) -> None:
        module, _, name = self.app.partition(":")
        application = getattr(importlib.import_module(module), name)
        listener = _listener()
        self.port = listener.getsockname()[1]
        config = uvicorn.Config(application, lifespan="off", log_level="warning")
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [listener]}, name="uvicorn", daemon=True
        )
        self._thread.start()
        wait_until_serving(f"{self.url}/sse/default/state/", 30, self._thread.is_alive)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(15)
            self._server = self._thread = None

    def log(self) -> str:
        return ""


class DaphneProcess:
    name = "daphne"

    def __init__(
        self, app: str = "tests.support.sse_asgi:application", env: dict[str, str] | None = None
    ) -> None:
        self.app = app
        self.extra_env = env or {}
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        handle, path = tempfile.mkstemp(prefix="sse-daphne-", suffix=".log")
        os.close(handle)
        self.log_path = Path(path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The Daphne process."""
        assert self.process is not None
        return self.process.pid

    def start(self, backends: dict[str, Any]) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(
            DJANGO_SETTINGS_MODULE="tests.support.command_settings",
            BROADCASTER_TEST_BACKENDS=json.dumps(backends),
            PYTHONUNBUFFERED="1",
            **self.extra_env,
        )
        listener = _listener()
        try:
            self.port = listener.getsockname()[1]
            fd = listener.fileno()
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    self.command(fd),
                    cwd=REPO,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(fd,),
                )
        finally:
            listener.close()  # the child has its own copy
        process = self.process
        wait_until_serving(f"{self.url}/sse/default/state/", 30, lambda: process.poll() is None)

    def command(self, fd: int) -> list[str]:
        """The server's command line, serving on the listening socket ``fd``."""
        return [sys.executable, "-m", "daphne", "--fd", str(fd), self.app]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.log_path.unlink(missing_ok=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class UvicornProcess(DaphneProcess):
    """uvicorn in a subprocess of its own, like `DaphneProcess`."""

    name = "uvicorn"

    def command(self, fd: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--fd",
            str(fd),
            "--log-level",
            "warning",
            self.app,
        ]
