"""Real Redis topologies on free loopback ports: Sentinel (1 master, 1 replica,
3 sentinels) and Cluster (3 masters + 3 replicas), each in its own tmp dirs.

Both skip with a reason when redis-server cannot run them, except under
REVSYNC_REQUIRE_SERVICES=1, where they fail.
"""

from __future__ import annotations

import functools
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from services.processes import Process, run
from tests.conftest import REQUIRE_SERVICES, RedisServer, free_port

SERVICE = "mymaster"


def _unavailable(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what}, and REVSYNC_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(what)


def _wait(check: object, what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {within}s")
        time.sleep(0.05)


def replica_linked(server: RedisServer) -> bool:
    """Whether a replica's link to its master is up."""
    client = server.client()
    try:
        return bool(client.info("replication").get("master_link_status") == "up")
    finally:
        client.close()


class SentinelProcess(Process):
    """``redis-server sentinel.conf --sentinel`` on a free port."""

    def __init__(self, port: int, workdir: Path, master_port: int) -> None:
        super().__init__(f"sentinel-{port}", [], log=workdir / "sentinel.log")
        self.port = port
        self.workdir = workdir
        self.master_port = master_port

    def start(self) -> None:
        # free_port() only finds a port that was free a moment ago; another process
        # can take it before the sentinel binds, so a lost race retries on a new one.
        for _ in range(3):
            if self._start():
                return
            self.port = free_port()
        _unavailable(f"no free port for a sentinel after 3 tries (see {self.workdir})")

    def _start(self) -> bool:
        """Start on ``self.port``; False if another process took that port first."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 500\n"
            f"sentinel failover-timeout {SERVICE} 2000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        binary = shutil.which("redis-sentinel") or shutil.which("redis-server")
        if binary is None:
            _unavailable("neither redis-sentinel nor redis-server is on PATH")
        assert self.log is not None
        self.log.unlink(missing_ok=True)  # a new log for each try: its text tells why
        self.args = [str(binary), str(conf), "--sentinel"]
        super().start()
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            if not self.running:
                assert self.proc is not None
                code = self.proc.returncode
                self.stop()
                if b"Address already in use" in self.log.read_bytes():
                    return False
                _unavailable(
                    f"this redis-server cannot run as a sentinel (exit {code}; see {self.log})"
                )
            try:
                client.execute_command("SENTINEL", "MASTERS")
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    _unavailable("a sentinel did not answer SENTINEL MASTERS within 10s")
                time.sleep(0.05)
        client.close()
        return True

    def master_port_now(self) -> int:
        client = redis.Redis(port=self.port, socket_timeout=1)
        try:
            addr = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        finally:
            client.close()
        return int(addr[1])


@dataclass
class SentinelSetup:
    master: RedisServer
    replica: RedisServer
    sentinels: list[SentinelProcess]
    more_replicas: list[RedisServer] = field(default_factory=list)

    @property
    def replicas(self) -> list[RedisServer]:
        return [self.replica, *self.more_replicas]

    def url(self, query: str = "") -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0{query}"

    def master_port(self) -> int:
        return self.sentinels[0].master_port_now()


@pytest.fixture
def sentinel_setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SentinelSetup]:
    """One master, one replica (or as many as an indirect parameter says) and three
    sentinels watching them."""
    master = RedisServer(free_port(), tmp_path / "master")
    follow = ["--replicaof", "127.0.0.1", str(master.port), "--replica-announce-ip", "127.0.0.1"]
    replica, *more = [
        RedisServer(free_port(), tmp_path / f"replica{i or ''}", follow)
        for i in range(getattr(request, "param", 1))
    ]
    sentinels = [
        SentinelProcess(free_port(), tmp_path / f"sentinel{i}", master.port) for i in range(3)
    ]
    setup = SentinelSetup(master, replica, sentinels, more)
    try:
        for server in (master, *setup.replicas):
            server.workdir.mkdir(parents=True)
            server.start()
        for server in setup.replicas:
            _wait(functools.partial(replica_linked, server), "replica in sync")
        for sentinel in sentinels:
            sentinel.start()

        def all_know_replica() -> bool:
            for s in sentinels:
                c = redis.Redis(port=s.port, socket_timeout=1)
                try:
                    replicas = c.execute_command("SENTINEL", "REPLICAS", SERVICE)
                    others = c.execute_command("SENTINEL", "SENTINELS", SERVICE)
                finally:
                    c.close()
                if len(replicas) < len(setup.replicas) or len(others) < 2:
                    return False
            return True

        _wait(all_know_replica, "sentinels discovering the replica and each other")
        yield setup
    finally:
        for sentinel in sentinels:
            sentinel.kill()
        master.kill()
        for server in setup.replicas:
            server.kill()


@dataclass
class ClusterSetup:
    servers: list[RedisServer]
    down: set[int] = field(default_factory=set)

    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.servers)
        return f"redis+cluster://{hosts}"

    def live(self) -> list[RedisServer]:
        return [s for s in self.servers if s.port not in self.down]

    def primary_for(self, key: str) -> RedisServer:
        """The server that owns ``key``'s slot now."""
        for server in self.live():
            client = server.client()
            try:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(primary[1])
                        return next(s for s in self.servers if s.port == port)
            except redis.RedisError:
                continue
            finally:
                client.close()
        pytest.fail(f"no live node knows the owner of {key!r}")

    def ok(self) -> bool:
        for server in self.live():
            client = server.client()
            try:
                info = client.execute_command("CLUSTER", "INFO")
            finally:
                client.close()
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
        return True


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is valid and free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@pytest.fixture
def cluster_setup(tmp_path: Path) -> Iterator[ClusterSetup]:
    """Three masters and three replicas, made one Cluster by redis-cli --cluster create."""
    cli = shutil.which("redis-cli")
    if cli is None:
        _unavailable("redis-cli is not on PATH (needed for redis-cli --cluster create)")
    servers = []
    for i in range(6):
        port = _cluster_port()
        workdir = tmp_path / f"node{i}"
        workdir.mkdir()
        servers.append(
            RedisServer(
                port,
                workdir,
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(workdir / "nodes.conf"),
                    "--cluster-node-timeout",
                    "1000",
                    "--cluster-replica-validity-factor",
                    "0",
                ],
            )
        )
    setup = ClusterSetup(servers)
    try:
        for server in servers:
            server.start()
        version = servers[0].client().info("server")["redis_version"]
        if int(str(version).split(".")[0]) < 7:
            _unavailable(f"redis-server {version} has no sharded pub/sub (Redis >= 7.0)")
        create = run(
            [
                str(cli),
                "--cluster",
                "create",
                *(f"127.0.0.1:{s.port}" for s in servers),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ]
        )
        if create.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed: {create.stdout!r} {create.stderr!r}")
        _wait(setup.ok, "cluster_state:ok on every node", within=30)

        def replicas_linked() -> bool:
            links = 0
            for server in servers:
                info = server.client().info("replication")
                links += info.get("role") == "slave" and info.get("master_link_status") == "up"
            return links == 3

        _wait(replicas_linked, "three replicas in sync", within=30)
        yield setup
    finally:
        for server in servers:
            server.kill()
