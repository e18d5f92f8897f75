"""Fixtures shared by every test: real services, free ports, subprocess helpers.

Tests that need Redis or PostgreSQL skip with a reason when the service cannot be
reached, unless REVSYNC_REQUIRE_SERVICES=1 (set by .ci/run), where they fail.

Processes are started through ``services.processes``; the run fails if any process
it started (or any orphan of one) is still alive at its end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import structlog

from services import processes
from services.processes import free_port as free_port  # re-exported for the tests

REQUIRE_SERVICES = os.environ.get("REVSYNC_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("REVSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "REVSYNC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
ROOT = Path(__file__).resolve().parent.parent


def _unavailable(what: str, why: object) -> None:
    msg = f"{what} is not reachable ({why})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{msg}, and REVSYNC_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared Redis at 127.0.0.1:6379 (or REVSYNC_TEST_REDIS_URL)."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        _unavailable(f"Redis at {REDIS_URL}", exc)
    return REDIS_URL


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The shared PostgreSQL (or REVSYNC_TEST_POSTGRES_URL)."""
    try:
        import asyncpg
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        _unavailable("asyncpg", exc)

    async def probe() -> None:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=3)
        await conn.close()

    # Probe in a thread of its own: an async fixture may be asking from inside a loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(asyncio.run, probe()).result()
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            _unavailable(f"PostgreSQL at {POSTGRES_URL}", exc)
    return POSTGRES_URL


@pytest.fixture
def channel() -> str:
    """A pub/sub channel of this test's own, so parallel runs never cross."""
    return f"revsync-test-{uuid.uuid4().hex[:12]}"


class RedisServer(processes.RedisServer):
    """A redis-server process of the test's own, on a free loopback port; ``kill()`` is
    kill -9: the server vanishes with everything it held in memory."""

    def start(self) -> None:
        try:
            super().start()
        except processes.Unavailable:
            _unavailable("redis-server", "not on PATH")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free port, killed after the test."""
    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'revsync.db'}"


@pytest.fixture
async def postgres_schema_url(postgres_url: str) -> AsyncIterator[str]:
    """The test PostgreSQL with a fresh schema of this test's own on the search path."""
    import asyncpg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(postgres_url)
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres_url else "?"
    try:
        yield f"{postgres_url}{sep}search_path={schema}"
    finally:
        try:
            await _drop_schema(conn, schema)
        finally:
            await conn.close()


async def _drop_schema(conn: Any, schema: str) -> None:
    """Drop a test's schema, ending sessions that still hold its tables (a node's
    background catch-up finishing late): under load a plain DROP can deadlock."""
    import asyncpg

    for attempt in range(5):
        await conn.execute(
            """SELECT pg_terminate_backend(l.pid) FROM pg_locks l
               JOIN pg_class c ON c.oid = l.relation
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()""",
            schema,
        )
        try:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            return
        except asyncpg.DeadlockDetectedError:
            if attempt == 4:
                raise
            await asyncio.sleep(0.1)


def copy_sqlite(source: Path, target: Path) -> None:
    """The sqlite3 backup API: an online backup of ``source``, or a restore into a live
    ``target`` that other connections keep open (a store going back in time)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="revsync-") as name:
        yield Path(name)


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """Undo a services app's logging set-up (structlog.configure, or the "revsync"
    stdlib logger's handler and level: either would hide lines from later tests)."""
    log = logging.getLogger("revsync")
    saved = (log.handlers[:], log.level, log.propagate)
    yield
    structlog.reset_defaults()
    log.handlers[:], log.propagate = saved[0], saved[2]
    log.setLevel(saved[1])  # setLevel: it also clears the loggers' level caches


def pytest_configure(config: pytest.Config) -> None:
    # A process whose parent dies (a hypercorn worker whose parent got SIGKILL, a node
    # of a demo run that crashed) is re-parented to pytest, where the check below sees it.
    processes.adopt_orphans()


LEFTOVERS = pytest.StashKey[list[str]]()


@pytest.hookimpl(trylast=True)  # after the fixtures' own teardown at session end
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run when a process it started is still alive: a leak outlives the run,
    holding ports and memory, and hides until the machine runs out of something.

    Under pytest-xdist each worker checks its own processes and hands what it found
    to the controller (``workeroutput``), which reports every worker's in one place:
    a worker's own exit status does not reach the run's."""
    config = session.config
    found = config.stash.get(LEFTOVERS, [])
    left = processes.leftovers()
    if left:
        lines = [f"pid {pid}: {cmd}" for pid, cmd in sorted(left.items())]
        found.append(
            "\n".join(
                [f"{len(left)} process(es) started by the test run still alive at its end:", *lines]
            )
        )
        processes.kill_leftovers(left)  # reported, and not left behind either
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["revsync_leftovers"] = found
        return
    if not found:
        return
    message = "\n".join(found)
    report = pytest.TestReport(
        nodeid="processes left running",
        location=(__file__, None, "processes left running"),
        keywords={},
        outcome="failed",
        longrepr=message + "\n(killed now)",
        when="teardown",
    )
    # Counted as an error: listed under ERRORS and in the last line, which turns red.
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.stats.setdefault("error", []).append(report)
    else:
        print(message, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """(pytest-xdist, controller) Collect a finished worker's leftover processes."""
    found = node.workeroutput.get("revsync_leftovers", []) if hasattr(node, "workeroutput") else []
    node.config.stash.setdefault(LEFTOVERS, []).extend(found)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep the figures tests measured: the lines a passing test prints that start
    with "[" (``print(f"\\n[cluster] ... 412 ms")``).  Printed together at the end of
    the run, also from pytest-xdist workers, whose own output is not shown."""
    if report.when == "call" and report.passed:
        _passed.add(report.nodeid)
    elif report.when == "teardown" and report.nodeid in _passed:
        # The teardown report holds every phase's output (a fixture may print last).
        for line in report.capstdout.splitlines():
            if line.startswith("["):
                _figures.append((report.nodeid, line))


_passed: set[str] = set()
_figures: list[tuple[str, str]] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _figures:
        terminalreporter.section("figures measured by the tests")
        for nodeid, text in sorted(_figures):
            terminalreporter.write_line(f"{nodeid}: {text}")
