"""A private ``redis-server`` for the Redis fault tests: own port, own directory.

Tests that stop, restart or reconfigure Redis must not touch the shared server
on 6379, so they start one of these (see the ``redis_server`` fixture in
tests/test_redis.py), which is always stopped in a ``finally``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``redis-server`` on a free loopback port, in a temporary directory.

    ``persistent=True`` turns on the append-only file (fsync on every write), so
    the data survives `restart`, as a production Redis with persistence would.
    """

    def __init__(self, *args: str, persistent: bool = False, password: str | None = None) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="broadcaster-redis-")
        self.password = password
        self.args = [
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "no",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "yes" if persistent else "no",
            "--appendfsync",
            "always",
            "--logfile",
            f"{self.dir}/redis.log",
            *(["--requirepass", password] if password else []),
            *args,
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.started = False

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, protocol=2)

    def start(self) -> None:
        """Start and wait for PING. On the first start only, a server that exits
        at once (its port, or a cluster node's bus port, taken since `free_port`)
        is started again on another port; a restart keeps its port."""
        for attempt in range(3 if not self.started else 1):
            if attempt:
                self.port = free_port()
                self.args[self.args.index("--port") + 1] = str(self.port)
                if "--cluster-port" in self.args:
                    self.args[self.args.index("--cluster-port") + 1] = str(free_port())
            if self.run():
                self.started = True
                return
        raise RuntimeError(f"redis-server on port {self.port} exited; see {self.dir}/redis.log")

    def run(self) -> bool:
        """Start the process; True once it answers PING, False if it exits first."""
        self.process = subprocess.Popen(
            ["redis-server", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with self.client() as client:
                    client.ping()
                return True
            except redis.RedisError:
                if self.process.poll() is not None:
                    self.process = None
                    return False
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not answer within 10 s; "
                        f"see {self.dir}/redis.log"
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()  # SIGTERM: Redis flushes its append-only file and exits
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay down ``down_for`` seconds, start on the same port; returns once
        the server answers PING again."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
