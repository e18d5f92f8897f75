"""The example node freezes its heap once it is first ready (services/common/node.py):
garbage collections stop walking the modules, the app and the start-up snapshot,
whose pauses were the slowest revocations under load (docs/benchmarks.md)."""

from __future__ import annotations

import re
import time

import httpx

from tests.services.conftest import NodeFactory, base_env, bearer, login


def test_a_ready_node_freezes_its_heap_and_still_serves(
    start_node: NodeFactory, redis_url: str, sqlite_url: str
) -> None:
    node = start_node(base_env(redis_url, sqlite_url, REVSYNC_LOG_LEVEL="info"))
    deadline = time.monotonic() + 10
    frozen = None
    while frozen is None and time.monotonic() < deadline:
        frozen = re.search(r"revsync\.api\.heap_frozen objects=(\d+)", node.log.read_text())
        time.sleep(0.05)
    assert frozen is not None, node.log_tail()
    # The modules and the app alone are tens of thousands of objects.
    assert int(frozen.group(1)) > 10_000
    # Frozen is not stopped: revocations and requests work as before.
    tokens = login(node)
    resp = httpx.get(f"{node.url}/protected", headers=bearer(tokens["access_token"]))
    assert resp.status_code == 200
    resp = httpx.delete(f"{node.url}/logout", headers=bearer(tokens["access_token"]))
    assert resp.status_code == 200, resp.text
    resp = httpx.get(f"{node.url}/protected", headers=bearer(tokens["access_token"]))
    assert resp.status_code == 401
