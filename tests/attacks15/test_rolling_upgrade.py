"""A rolling upgrade across ping channels: a node of main's previous code (e19797e,
pings on the shared channel) beside nodes of this code (pings on their own ping
channels), hypercorn processes on one redis-server and one SQLite file.  Both kinds
must stay synced (ready) and revocations must flow both ways over the bus (each
receiving node counts the message: applied, or a duplicate of a catch-up)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.processes import ROOT, Node
from tests.conftest import RedisServer
from tests.services.conftest import NodeFactory, base_env, bearer, login

PREVIOUS = "e19797e"
"""main before ping channels and failover following (issue 15)."""


def _previous_tree(into: Path) -> Path:
    """revsync and services as they were at PREVIOUS, extracted from this repository."""
    if subprocess.run(["git", "cat-file", "-e", PREVIOUS], cwd=ROOT).returncode != 0:
        pytest.skip(f"commit {PREVIOUS} is not in this clone")
    into.mkdir()
    archive = subprocess.run(
        ["git", "archive", PREVIOUS, "revsync", "services"], cwd=ROOT, capture_output=True
    )
    assert archive.returncode == 0, archive.stderr
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _refused(node: Node, token: str, within: float) -> float:
    started = time.monotonic()
    while True:
        status = httpx.get(f"{node.url}/protected", headers=bearer(token), timeout=5).status_code
        if status == 401:
            return time.monotonic() - started
        assert status == 200, status
        assert time.monotonic() - started < within, f"{node.name} still accepts it"
        time.sleep(0.01)


def _metric(node: Node, name: str) -> float:
    text = httpx.get(f"{node.url}/metrics", timeout=5).text
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not in {node.name}'s /metrics"
    return float(match.group(1))


def _bus_events(node: Node) -> float:
    """Revocation messages the node took from the bus (applied, or already read)."""
    return _metric(node, "revsync_revocations_applied_total") + _metric(
        node, "revsync_duplicate_events_total"
    )


@pytest.mark.parametrize("signed", [True, False], ids=["event-key", "no-event-key"])
def test_previous_and_new_nodes_stay_synced_and_exchange_revocations(
    start_node: NodeFactory,
    redis_server: RedisServer,
    sqlite_url: str,
    tmp_path: Path,
    signed: bool,
) -> None:
    old_tree = _previous_tree(tmp_path / "previous")
    env = base_env(
        redis_server.url, sqlite_url, REVSYNC_RESYNC_INTERVAL="2", REVSYNC_MAX_STALENESS="10"
    )
    if not signed:
        env.pop("REVSYNC_EVENT_KEY")
    new = [start_node(env, name=f"new{i}") for i in (1, 2)]
    # The previous code, first on sys.path, served in this one process (hypercorn's
    # workers would start afresh from the repository root, with this code).
    old = Node("old", env, tmp_path)
    boot = (
        f"import sys; sys.path.insert(0, {str(old_tree)!r}); import asyncio; "
        "from hypercorn.asyncio import serve; from hypercorn.config import Config; "
        "from services.api.app import app; config = Config(); "
        f"config.bind = ['127.0.0.1:{old.port}']; asyncio.run(serve(app, config))"
    )
    old.args = [sys.executable, "-c", boot]
    start_node.nodes.append(old)
    old.start()
    old.wait_ready()
    version = httpx.get(f"{old.url}/readyz", timeout=5).json()
    # It is the previous code: no ping channel on the server for it.
    admin = redis_server.client()
    channel = env["REVSYNC_CHANNEL"]
    assert admin.pubsub_numsub(f"{{{channel}}}:ping:old")[0][1] == 0
    assert admin.pubsub_numsub(f"{{{channel}}}:ping:new1")[0][1] == 1
    assert admin.pubsub_numsub(channel)[0][1] == 3, version
    admin.close()

    nodes = [*new, old]
    # Longer than every node's heartbeat watchdog (3 intervals, at least 1 s) and its
    # staleness bound: still ready, all of them.
    time.sleep(6)
    for node in nodes:
        assert httpx.get(f"{node.url}/readyz", timeout=5).status_code == 200, node.name
    for origin in nodes:
        token = login(origin)["access_token"]
        for node in nodes:
            assert httpx.get(f"{node.url}/protected", headers=bearer(token)).status_code == 200
        before = {node.name: _bus_events(node) for node in nodes}
        assert httpx.delete(f"{origin.url}/logout", headers=bearer(token)).status_code == 200
        for node in nodes:
            took = _refused(node, token, within=3)
            print(f"\n[{origin.name} -> {node.name}] refused {took * 1000:.0f} ms after logout")
        for node in nodes:
            if node is not origin:
                assert _bus_events(node) > before[node.name], f"{origin.name} -> {node.name}"
    assert _metric(new[0], "revsync_foreign_pings_total") > 0, "the old node's pings"
    for node in nodes:
        assert httpx.get(f"{node.url}/readyz", timeout=5).status_code == 200, node.name
