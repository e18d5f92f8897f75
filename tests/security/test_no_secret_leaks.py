"""No password in any output: every URL (bus, store for PostgreSQL and Redis, Sentinel,
Cluster) carries a distinctive password, each component is made to fail (unreachable
host or port, wrong password, start-up timeout, a bad URL, the resync job), and
everything captured is searched: exception messages and their tracebacks (causes
included), ``status()``, ``repr(settings)``, the library's log lines at debug level,
real node processes' output and HTTP bodies (/readyz, /metrics), and the resync job's
stdout and stderr.  None may contain a password."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from revsync import RevSync
from revsync.stores import store_from_url
from services.processes import Node
from tests.conftest import ROOT, RedisServer, free_port
from tests.engine.conftest import make_app
from tests.services.conftest import NodeFactory, base_env

BUS = "Bus-pw-7f3a91c2"
RIGHT = "Right-pw-0b6e44d1"  # the private server's real password: must not show either
STORE_REDIS = "Store-redis-pw-5c2e8d"
STORE_PG = "Store-pg-pw-9a1f37"
SENTINEL = "Sentinel-pw-44be10"
SENTINEL_QUERY = "Sentinel-query-pw-e7d2"
CLUSTER = "Cluster-pw-31ac5f"
SECRETS = (BUS, RIGHT, STORE_REDIS, STORE_PG, SENTINEL, SENTINEL_QUERY, CLUSTER)


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server that wants the password RIGHT."""
    server = RedisServer(free_port(), tmp_path)
    server.start()  # it answers PING without a password until:
    server.client().config_set("requirepass", RIGHT)
    try:
        yield server
    finally:
        server.kill()


class Urls:
    """Every URL form, each with its own password, aimed at something that fails."""

    def __init__(self, locked_port: int, postgres_url: str) -> None:
        closed = free_port()
        host = f"127.0.0.1:{locked_port}"
        pg_host = postgres_url.split("@", 1)[1].split("/", 1)[0]
        self.bus_wrong = f"redis://appuser:{BUS}@{host}/0"
        self.bus_right = f"redis://:{RIGHT}@{host}/0"
        self.bus_closed = f"redis://appuser:{BUS}@127.0.0.1:{closed}/0"
        self.store_redis_wrong = f"redis://appuser:{STORE_REDIS}@{host}/0?prefix=leak"
        self.store_pg_closed = f"postgresql://app:{STORE_PG}@127.0.0.1:{closed}/test"
        # Trust auth accepts any password: a reachable PostgreSQL whose URL has one.
        self.store_pg_up = f"postgresql://postgres:{STORE_PG}@{pg_host}/test"
        self.sentinel = (
            f"rediss+sentinel://app:{SENTINEL}@127.0.0.1:{closed},127.0.0.1:{free_port()}"
            f"/mymaster?sentinel_password={SENTINEL_QUERY}&socket_connect_timeout=0.5"
        )
        self.cluster = f"redis+cluster://app:{CLUSTER}@127.0.0.1:{closed},127.0.0.1:{closed}"


def _exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc)


def _assert_clean(captured: list[str], what: str) -> None:
    text = "\n".join(captured)
    assert len(text) > 200, f"{what}: too little output to prove anything"
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{what} shows {leaked}:\n{text[-4000:]}"


async def test_in_process_failures_show_no_password(
    locked_redis: RedisServer,
    postgres_url: str,
    sqlite_url: str,
    channel: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    urls = Urls(locked_redis.port, postgres_url)
    captured: list[str] = []
    # (bus, store): a start-up that times out, each with another failing part.
    cases = [
        (urls.bus_wrong, sqlite_url),  # wrong bus password
        (urls.bus_right, urls.store_redis_wrong),  # wrong store password
        (urls.bus_closed, urls.store_pg_closed),  # nothing listening
        (urls.sentinel, urls.sentinel),  # no sentinel answers
        (urls.cluster, urls.cluster),  # no cluster node answers
        (urls.bus_wrong, urls.store_pg_up),  # a reachable store, a refused bus
    ]
    startup_errors = 0
    for bus, store in cases:
        node = RevSync(
            make_app(), redis_url=bus, store_url=store, channel=channel, startup_timeout=1
        )
        captured += [repr(node.settings), node.bus.url, node.store.url]
        try:
            await node.start()
        except RuntimeError as exc:
            startup_errors += 1
            captured.append(_exception_text(exc))
        captured.append(repr(node.status()))
        await node.stop()

        # The same, not waiting: status() while failing, then a store error of its own.
        waiting = RevSync(
            make_app(), redis_url=bus, store_url=store, channel=channel, wait_for_ready=False
        )
        await waiting.start()
        await asyncio.sleep(0.3)
        captured.append(repr(waiting.status()))
        try:
            await waiting.revoke({"jti": "j", "exp": 2_000_000_000, "iat": 1, "type": "access"})
        except Exception as exc:  # any failure: its text is what is checked
            captured.append(_exception_text(exc))
        await waiting.stop()
    assert startup_errors == len(cases)

    # Each store on its own, and malformed URLs: errors at construction.
    for store_url in (urls.store_redis_wrong, urls.store_pg_closed, urls.sentinel, urls.cluster):
        store = store_from_url(store_url)
        try:
            await store.connect()
        except Exception as exc:  # its text is what is checked
            captured.append(_exception_text(exc))
        await store.close()
    for bad in (
        f"redis://app:{BUS}@127.0.0.1:notaport/0",
        f"redis://app:{BUS}@127.0.0.1:6379/notadb",
        f"http://app:{BUS}@127.0.0.1:6379/0",
        f"rediss+sentinel://app:{SENTINEL}@h:1/m?sentinel_password={SENTINEL_QUERY}&bogus=1",
        f"redis+cluster://app:{CLUSTER}@h:1/5",
    ):
        for config in ({"REVSYNC_REDIS_URL": bad}, {"REVSYNC_STORE_URL": bad}):
            try:
                RevSync(make_app(**config))
            except Exception as exc:  # its text is what is checked
                captured.append(_exception_text(exc))
    out, err = capsys.readouterr()
    captured += [out, err, caplog.text]
    _assert_clean(captured, "in-process failures")


def test_node_processes_and_the_resync_job_show_no_password(
    locked_redis: RedisServer, postgres_url: str, start_node: NodeFactory, tmp_path: Path
) -> None:
    urls = Urls(locked_redis.port, postgres_url)
    debug = {"REVSYNC_LOG_LEVEL": "debug", "REVSYNC_STARTUP_TIMEOUT": "1"}
    captured: list[str] = []

    # A node that cannot start: the start-up failure itself (once printed the bus URL).
    env = base_env(urls.bus_wrong, urls.store_pg_closed, REVSYNC_WAIT_FOR_READY="true", **debug)
    failing = Node("failing", env, tmp_path)
    failing.start()
    try:
        deadline = time.monotonic() + 30
        while failing.running and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not failing.running, "a node that cannot sync must fail its start-up"
    finally:
        failing.stop()
    log = failing.log.read_text()
    assert "REVSYNC_REDIS_URL=" in log  # the start-up error, naming the URLs
    captured.append(log)

    # Nodes that come up unsynced: /readyz and /metrics while failing, at debug level.
    wait = {**debug, "REVSYNC_WAIT_FOR_READY": "false"}
    nodes = [
        start_node(base_env(urls.sentinel, urls.store_pg_up, **wait), ready=False),
        start_node(base_env(urls.cluster, urls.store_redis_wrong, **wait), ready=False),
        start_node(base_env(urls.bus_right, urls.store_redis_wrong, **wait), ready=False),
    ]
    with httpx.Client(timeout=5) as http:
        for _ in range(3):
            for node in nodes:
                for path in ("/readyz", "/metrics", "/healthz"):
                    resp = http.get(f"{node.url}{path}")
                    captured.append(f"{resp.status_code} {resp.text}")
            time.sleep(0.5)
    assert any(c.startswith("503 ") for c in captured)
    start_node.stop()
    captured += [node.log.read_text() for node in nodes]

    # The resync job, failing on each part.
    for bus, store in (
        (urls.bus_wrong, urls.store_pg_closed),
        (urls.bus_right, urls.store_redis_wrong),
        (urls.bus_right, urls.store_pg_closed),
        (urls.sentinel, urls.sentinel),
        (urls.cluster, urls.cluster),
        (f"redis://app:{BUS}@127.0.0.1:bad/0", urls.store_pg_closed),
    ):
        job = subprocess.run(
            [sys.executable, "-m", "services.resync", "--wait", "0.5"],
            env=base_env(bus, store),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert job.returncode != 0, job.stdout
        captured += [job.stdout, job.stderr]
    _assert_clean(captured, "node processes and the resync job")
