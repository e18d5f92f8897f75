"""Two real PostgreSQL servers of the test's own: a primary and a streaming replica.

initdb makes the primary (``wal_level=replica``), ``pg_basebackup -R`` the replica;
each runs as ``postgres -D <dir>`` in a process group of its own
(services.processes), so ``kill()`` is kill -9 of the server and all its backends: a
machine gone.  The data directories live in a temporary directory outside pytest's
tmp_path (which the server's user could not enter), owned by that user: initdb
refuses to run as root, so under root every server command runs as the ``postgres``
user (``runuser -u postgres --``).

Skips with the reason when no PostgreSQL binaries or no usable user are found, except
under REVSYNC_REQUIRE_SERVICES=1, where it fails.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.processes import Process, run
from tests.conftest import REQUIRE_SERVICES, free_port

DATABASE = "postgres"


def _unavailable(what: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{what}, and REVSYNC_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(what)


def _until(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within}s")
        time.sleep(0.02)


def _bindir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin with initdb, or pg_ctl's on PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path is None:
        _unavailable("no PostgreSQL server binaries (initdb) under /usr/lib/postgresql or on PATH")
    return Path(str(on_path)).parent


def _run_as() -> tuple[list[str], str | None]:
    """The command prefix that runs a server command as a user PostgreSQL accepts,
    and that user's name when it is not us."""
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        _unavailable("running as root and there is no postgres user for initdb to run as")
    if runuser is None:
        _unavailable("running as root and runuser is missing (initdb refuses root)")
    return [str(runuser), "-u", "postgres", "--"], "postgres"


class PostgresServer(Process):
    """``postgres -D datadir`` on a loopback port, in a process group of its own."""

    def __init__(self, name: str, datadir: Path, port: int, prefix: list[str], bindir: Path):
        super().__init__(f"postgres-{name}-{port}", [], log=datadir.parent / f"{name}.log")
        self.datadir = datadir
        self.port = port
        self.prefix = prefix
        self.bindir = bindir
        self.settings: dict[str, str] = {}

    def start(self) -> None:
        """Start it (settings as ``-c`` options, so a base backup does not copy them)
        and wait until it accepts connections (30 s at most)."""
        options = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.datadir.parent),
            "fsync": "off",  # kill -9 keeps what the kernel has; only a power cut would not
            **self.settings,
        }
        args = [*self.prefix, str(self.bindir / "postgres"), "-D", str(self.datadir)]
        for name, value in options.items():
            args += ["-c", f"{name}={value}"]
        self.args = args
        super().start()
        deadline = time.monotonic() + 30
        while not self.accepting():
            if not self.running or time.monotonic() > deadline:
                tail = self.log_tail()
                self.kill()
                pytest.fail(f"{self.name} did not start:\n{tail}")
            time.sleep(0.05)

    def accepting(self) -> bool:
        ready = run([str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)])
        return ready.returncode == 0

    def sql(self, query: str) -> str:
        """Run ``query`` with psql; its output, unaligned."""
        psql = [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port)]
        options = ["-U", "postgres", "-d", DATABASE, "-XAtq", "-v", "ON_ERROR_STOP=1"]
        result = run([*psql, *options, "-c", query], timeout=30)
        if result.returncode != 0:
            pytest.fail(f"psql on {self.name}: {query!r} failed: {result.stderr}")
        return result.stdout.strip()


class PostgresPair:
    """A primary and its streaming replica (see the module docstring)."""

    def __init__(self, root: Path, *, synchronous: bool) -> None:
        self.root = root
        self.bindir = _bindir()
        self.prefix, self.user = _run_as()
        self.synchronous = synchronous
        self.primary = PostgresServer(
            "primary", root / "primary", free_port(), self.prefix, self.bindir
        )
        self.replica = PostgresServer(
            "replica", root / "replica", free_port(), self.prefix, self.bindir
        )

    def dsn(self) -> str:
        """Both servers, the read-write one chosen at each connection (asyncpg tries
        the hosts in order and skips a server in recovery)."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.replica.port}"
        return f"postgresql://postgres@{hosts}/{DATABASE}?target_session_attrs=read-write"

    def _tool(self, name: str, *args: str) -> None:
        result = run([*self.prefix, str(self.bindir / name), *args], timeout=60)
        if result.returncode != 0:
            pytest.fail(f"{name} failed ({result.returncode}): {result.stdout}{result.stderr}")

    def start(self) -> None:
        primary, replica = self.primary, self.replica
        self._tool(
            "initdb",
            *("-D", str(primary.datadir), "-A", "trust", "-U", "postgres"),
            *("--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C"),
        )
        primary.settings = {"wal_level": "replica", "max_wal_senders": "4"}
        if self.synchronous:
            # Commits wait until the replica has flushed them: a returned write survives
            # the primary's death.  On the command line only, so the replica (a copy of
            # the primary's files) does not inherit it and wait for a standby it lacks.
            primary.settings["synchronous_standby_names"] = "*"
        primary.start()
        self._tool(
            "pg_basebackup",
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(replica.datadir), "-R", "-X", "stream", "-c", "fast", "--no-sync"),
        )
        replica.settings = {"hot_standby": "on"}
        replica.start()
        streaming = "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
        _until(lambda: primary.sql(streaming) == "1", "the replica streaming")

    def hold_replication(self) -> None:
        """Once the replica has received everything the primary wrote so far, stop its
        WAL receiver (no primary_conninfo any more): commits on an asynchronous primary
        go on returning, and the replica no longer gets them."""
        lsn = self.primary.sql("SELECT pg_current_wal_lsn()")
        received = f"SELECT pg_last_wal_receive_lsn() >= '{lsn}'"
        _until(lambda: self.replica.sql(received) == "t", f"the replica receiving WAL up to {lsn}")
        self.replica.sql("ALTER SYSTEM SET primary_conninfo = ''")
        self.replica.sql("SELECT pg_reload_conf()")
        senders = "SELECT count(*) FROM pg_stat_replication"
        _until(lambda: self.primary.sql(senders) == "0", "the replica's WAL receiver stopping")

    def promote(self) -> None:
        """``pg_ctl promote`` the replica, waiting until it accepts writes."""
        self._tool("pg_ctl", "promote", "-w", "-t", "30", "-D", str(self.replica.datadir))

    def stop(self) -> None:
        for server in (self.primary, self.replica):
            server.kill()


def postgres_pair(*, synchronous: bool) -> Iterator[PostgresPair]:
    """A started pair in a temporary directory; everything killed and removed after."""
    _bindir()
    _, user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="revsync-pg-"))
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        pair = PostgresPair(root, synchronous=synchronous)
        try:
            pair.start()
            yield pair
        finally:
            pair.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
