"""Helpers for the end-to-end test: the testproject served by Daphne in subprocesses.

Each server gets a listening socket bound here on a free loopback port and
passed to Daphne with ``--fd`` (no race for the port), its own environment
(``BROADCAST_URL``, ``BROADCAST_KEY_PREFIX``, ...) and a log file. `stop()`
ends the process it started and nothing else.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from .servers import wait_until_serving

REPO = Path(__file__).resolve().parents[2]
TESTPROJECT = REPO / "testproject"
ARTIFACTS = REPO / "artifacts"

#: Variables of the test run that must not leak into the testproject's processes.
_NOT_INHERITED = ("DJANGO_SETTINGS_MODULE", "BROADCAST_URL", "BROADCAST_KEY_PREFIX", "PYTHONPATH")


def project_env(**variables: str) -> dict[str, str]:
    """The environment of a testproject process: this one's, with its own settings."""
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    env.update(DJANGO_SETTINGS_MODULE="testproject.settings", PYTHONUNBUFFERED="1")
    env.update(variables)
    return env


def manage(env: dict[str, str], *args: str) -> str:
    """Run ``manage.py ARGS`` of the testproject; raise with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=TESTPROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} exited with {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


class DaphneServer:
    """``daphne testproject.asgi:application`` on a free port of 127.0.0.1."""

    def __init__(
        self, name: str, env: dict[str, str], log_dir: Path, options: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.env = env
        self.options = options  # more daphne command-line options
        self.log_path = log_dir / f"daphne-{name}.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            self.port = listener.getsockname()[1]
            fd = listener.fileno()
            daphne = Path(sys.executable).with_name("daphne")
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    [str(daphne), "--fd", str(fd), *self.options, "testproject.asgi:application"],
                    cwd=TESTPROJECT,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(fd,),
                )
        finally:
            listener.close()  # the child holds its own copy
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        process = self.process
        assert process is not None
        wait_until_serving(f"{self.url}/", timeout, lambda: process.poll() is None, self.log)

    def stop(self, timeout: float = 10.0) -> None:
        """End the process started by `start` (SIGINT, then SIGKILL if it lingers)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
