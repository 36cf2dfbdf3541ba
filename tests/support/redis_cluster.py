"""A private Redis Cluster (3 masters, 3 replicas) and a Sentinel set (one master,
one replica, 3 sentinels), on free loopback ports in temporary directories.

The test modules start them in fixtures that always stop them (`stop`), so
nothing outlives the tests. Timeouts are short (``cluster-node-timeout`` 1 s,
``down-after-milliseconds`` 1 s) so a failover happens within a few seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis

from .redis_servers import RedisServer, free_port

#: Seconds a cluster or a failover may take to settle before the fixture fails.
SETTLE = 30.0
#: The service name the sentinels monitor: this run's own, so a sentinel left
#: running by another run (killed before its teardown) never takes part.
SERVICE = f"service-{uuid.uuid4().hex[:12]}"
#: A replica's full sync starts at once instead of after 5 s.
FAST_SYNC = ("--repl-diskless-sync-delay", "0")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = SETTLE) -> None:
    """Return once ``condition()`` holds (errors count as "not yet"); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout:.0f}s")
        time.sleep(0.05)


def replicate(server: RedisServer, master_port: int) -> None:
    """Make ``server`` start as a replica of the master on ``master_port``."""
    if "--replicaof" in server.args:
        at = server.args.index("--replicaof")
        del server.args[at : at + 3]
    server.args += ["--replicaof", "127.0.0.1", str(master_port)]


class RedisCluster:
    """Six cluster-enabled ``redis-server``: 3 masters with one replica each, all
    with ``password`` when given."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password
        auth = ("--masterauth", password) if password else ()
        self.nodes = [
            RedisServer(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                # The default bus port, port + 10000, may be taken or above 65535.
                "--cluster-port",
                str(free_port()),
                # Failover must not wait for a replica's data age check.
                "--cluster-replica-validity-factor",
                "0",
                *FAST_SYNC,
                *auth,
                password=password,
            )
            for _ in range(6)
        ]

    @property
    def url(self) -> str:
        """A seed node's URL (the first node)."""
        return self.nodes[0].url

    def node(self, port: int) -> RedisServer:
        """The node listening on ``port``."""
        return next(node for node in self.nodes if node.port == port)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        create = ["--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"]
        if self.password:
            create = ["-a", self.password, "--no-auth-warning", *create]
        subprocess.run(
            ["redis-cli", *create],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=SETTLE,
        )
        self.wait_healthy()

    def wait_healthy(self) -> None:
        """Wait until every running node says ``cluster_state:ok`` and knows 3 masters
        serving all slots."""

        def healthy() -> bool:
            for node in self.nodes:
                if node.process is None:
                    continue
                with node.client() as client:
                    if client.cluster("info")["cluster_state"] != "ok":
                        return False
                    if len(self.masters(client)) != 3:
                        return False
            return True

        wait_for(healthy, "the cluster was not healthy")

    @staticmethod
    def masters(client: redis.Redis) -> dict[int, tuple[int, int]]:
        """Master port -> (first slot, last slot) of its first range, as ``client`` sees it."""
        masters: dict[int, tuple[int, int]] = {}
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):  # type: ignore[no-untyped-call]
            masters.setdefault(int(master[1]), (int(start), int(end)))
        return masters

    def master_of(self, key: str) -> RedisServer:
        """The node serving ``key``'s slot now (as the first running node sees it)."""
        with next(n for n in self.nodes if n.process is not None).client() as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):  # type: ignore[no-untyped-call]
                if int(start) <= slot <= int(end):
                    return self.node(int(master[1]))
        raise LookupError(f"no node serves slot {slot}")

    def node_id(self, node: RedisServer) -> str:
        with node.client() as client:
            return str(client.execute_command("CLUSTER", "MYID").decode())  # type: ignore[no-untyped-call]

    def start_moving(self, slot: int, source: RedisServer, target: RedisServer) -> None:
        """Mark ``slot`` migrating from ``source`` to ``target`` (keys not moved yet:
        ``source`` answers ``ASK`` for keys it does not hold)."""
        with target.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.node_id(source))  # type: ignore[no-untyped-call]
        with source.client() as client:
            client.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.node_id(target))  # type: ignore[no-untyped-call]

    def finish_moving(self, slot: int, source: RedisServer, target: RedisServer) -> None:
        """MIGRATE ``slot``'s keys to ``target`` and give it the slot, on every master."""
        with source.client() as client:
            while keys := client.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):  # type: ignore[no-untyped-call]
                auth = ("AUTH", self.password) if self.password else ()
                client.execute_command(  # type: ignore[no-untyped-call]
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, *auth, "KEYS", *keys
                )
        target_id = self.node_id(target)
        for node in (target, source, *self.nodes):
            if node.process is None:
                continue
            with node.client() as client:
                if client.info("replication")["role"] == "master":
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)  # type: ignore[no-untyped-call]
        self.wait_healthy()

    def fail_over(self, master: RedisServer, revive: bool = True) -> None:
        """Kill ``master`` (SIGKILL) and wait until its replica took over; with
        ``revive``, also `revive` it."""
        assert master.process is not None
        master.process.kill()
        master.process.wait()
        master.process = None

        def replaced() -> bool:
            with next(n for n in self.nodes if n.process is not None).client() as client:
                return master.port not in self.masters(client) and len(self.masters(client)) == 3

        wait_for(replaced, f"no replica took over from port {master.port}")
        if revive:
            self.revive(master)

    def revive(self, node: RedisServer) -> None:
        """Restart a killed ``node`` (it rejoins as a replica) and wait until the
        cluster is healthy again."""
        node.start()
        self.wait_healthy()

    def stop(self) -> None:
        for node in self.nodes:
            node.cleanup()


class RedisSentinels:
    """A master, its replica and 3 sentinels monitoring them as `SERVICE`; the
    master and replica want ``password`` when given (the sentinels want none)."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password
        auth = ("--masterauth", password) if password else ()
        self.master = RedisServer(*FAST_SYNC, *auth, password=password)
        self.replica = RedisServer(*FAST_SYNC, *auth, password=password)
        self.dir = Path(tempfile.mkdtemp(prefix="broadcaster-sentinel-"))
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.restarts = 0

    @property
    def url(self) -> str:
        """The ``LOCATION`` naming the service (with the master's password)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{SERVICE}/0"

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The ``SENTINELS`` option."""
        return [("127.0.0.1", port) for port in self.sentinel_ports]

    def servers(self) -> list[RedisServer]:
        return [self.master, self.replica]

    def start(self) -> None:
        self.master.start()
        replicate(self.replica, self.master.port)
        self.replica.start()
        self.sentinels = [self.start_sentinel(port) for port in self.sentinel_ports]
        seen: dict[int, str] = {}

        def ready() -> bool:
            self.restart_dead_sentinels()
            for port in self.sentinel_ports:
                with redis.Redis(host="127.0.0.1", port=port) as sentinel:
                    state = sentinel.sentinel_master(SERVICE)
                    seen[port] = (
                        f"{state['num-other-sentinels']} other sentinels, "
                        f"{state['num-slaves']} replicas"
                    )
                    if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                        return False
            return True

        try:
            wait_for(ready, "the sentinels did not find each other and the replica")
        except RuntimeError as error:
            raise RuntimeError(f"{error}; last seen {seen}; {self.logs()}") from None

    def start_sentinel(self, port: int) -> subprocess.Popen[bytes]:
        config = self.dir / f"sentinel-{port}.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {self.dir}\n"
            f"logfile {self.dir}/sentinel-{port}.log\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 2000\n"
            + (f"sentinel auth-pass {SERVICE} {self.password}\n" if self.password else "")
        )
        return subprocess.Popen(
            ["redis-server", str(config), "--sentinel"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def restart_dead_sentinels(self) -> None:
        """Start a sentinel that exited (its port taken between `free_port` and its
        bind, say) again on a new port; fail with its log on the third exit."""
        for at, process in enumerate(self.sentinels):
            if process.poll() is None:
                continue
            self.restarts += 1
            if self.restarts > 3:
                raise RuntimeError(f"a sentinel keeps exiting; {self.logs()}")
            self.sentinel_ports[at] = free_port()
            self.sentinels[at] = self.start_sentinel(self.sentinel_ports[at])

    def logs(self) -> str:
        """The last lines of every sentinel's log, for a failure message."""
        tails = []
        for log in sorted(self.dir.glob("sentinel-*.log")):
            lines = log.read_text(errors="replace").splitlines()[-8:]
            tails.append(f"{log.name}:\n" + "\n".join(lines))
        return "\n".join(tails) or "no sentinel log"

    def current_master_port(self) -> int:
        with redis.Redis(host="127.0.0.1", port=self.sentinel_ports[0]) as sentinel:
            _, port = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            return int(port)

    def current_master(self) -> RedisServer:
        port = self.current_master_port()
        return next(server for server in self.servers() if server.port == port)

    def fail_over(self) -> None:
        """Kill the master (SIGKILL), wait until every sentinel names the replica,
        restart the old master as its replica and wait until it replicates."""
        master = self.current_master()
        assert master.process is not None
        master.process.kill()
        master.process.wait()
        master.process = None

        def promoted() -> bool:
            for port in self.sentinel_ports:
                with redis.Redis(host="127.0.0.1", port=port) as sentinel:
                    _, new = sentinel.execute_command(
                        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE
                    )
                    if int(new) == master.port:
                        return False
            return True

        wait_for(promoted, f"the sentinels did not replace the master on port {master.port}")
        # Started as the new master's replica: the sentinels would make it one too,
        # but only seconds later.
        replicate(master, self.current_master_port())
        master.start()

        def replicating() -> bool:
            with master.client() as client:
                info = client.info("replication")
                return bool(info["role"] == "slave" and info["master_link_status"] == "up")

        wait_for(replicating, f"the old master on port {master.port} did not become a replica")

    def stop(self) -> None:
        for process in self.sentinels:
            process.terminate()
        for process in self.sentinels:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.sentinels = []
        for server in self.servers():
            server.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)
