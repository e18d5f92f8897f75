"""/readyz and fail-closed behaviour of a real node when the store or Redis is away."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import RedisServer, free_port
from tests.services.conftest import NodeFactory, base_env, bearer, login


def _wait_status(url: str, status: int, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(url, timeout=2)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.05)


def test_readyz_503_until_backfill_completes(
    start_node: NodeFactory, redis_url: str, postgres_url: str, sqlite_url: str
) -> None:
    # A PostgreSQL port nothing listens on: the start-up snapshot cannot be taken.
    dead_store = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    node = start_node(base_env(redis_url, dead_store), ready=False)
    time.sleep(0.5)
    resp = httpx.get(f"{node.url}/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["ready"] is False
    assert body["backfilled"] is False
    assert "backfill" in body["reason"]
    assert httpx.get(f"{node.url}/healthz").status_code == 200
    metrics = httpx.get(f"{node.url}/metrics").text
    assert "revsync_ready 0.0" in metrics
    assert "revsync_backfilled 0.0" in metrics
    assert "revsync_last_sync_timestamp_seconds 0.0" in metrics

    # Not backfilled: no token is accepted, even a fresh one, and none is called
    # revoked: 503 "retry", not 401 "log the user out".
    tokens = login(node)
    resp = httpx.get(f"{node.url}/protected", headers=bearer(tokens["access_token"]))
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "1"  # REVSYNC_RESYNC_INTERVAL of base_env
    assert "start-up sync" in resp.json()["msg"]


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
def test_redis_unreachable_past_max_staleness(
    start_node: NodeFactory, redis_server: RedisServer, sqlite_url: str, fail_mode: str
) -> None:
    """The bus is a private redis-server, stopped for longer than the staleness bound.

    Fail closed: /readyz 503, fresh tokens 503 + Retry-After (never 401: clients would
    log their users out over an outage).  Fail open: /readyz stays 200 with stale: true
    (a shared Redis outage must not empty the Service), fresh tokens accepted.  Both:
    a token revoked before the outage is still 401 "Token has been revoked".
    """
    env = base_env(
        redis_server.url,
        sqlite_url,
        REVSYNC_HEARTBEAT_INTERVAL="0.2",
        REVSYNC_MAX_STALENESS="1",
        REVSYNC_RESYNC_INTERVAL="2",
        REVSYNC_FAIL_MODE=fail_mode,
    )
    node = start_node(env)
    access = login(node)["access_token"]
    revoked = login(node)["access_token"]
    assert httpx.get(f"{node.url}/protected", headers=bearer(access)).status_code == 200
    assert httpx.delete(f"{node.url}/logout", headers=bearer(revoked)).status_code == 200

    redis_server.stop()
    if fail_mode == "closed":
        ready = _wait_status(f"{node.url}/readyz", 503, timeout=10)
        assert ready.status_code == 503, ready.text
        assert "no confirmed sync" in ready.json()["reason"]
        resp = httpx.get(f"{node.url}/protected", headers=bearer(access))
        assert resp.status_code == 503, resp.text
        assert resp.headers["Retry-After"] == "2"  # REVSYNC_RESYNC_INTERVAL
        assert resp.json()["msg"].startswith("Revocation state is unavailable: ")
        assert "no confirmed sync" in resp.json()["msg"]
        assert "revsync_ready 0.0" in httpx.get(f"{node.url}/metrics").text
    else:
        deadline = time.monotonic() + 10
        while not (ready := httpx.get(f"{node.url}/readyz", timeout=2)).json()["stale"]:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.05)
        assert ready.status_code == 200, ready.text
        assert ready.json()["ready"] is True
        assert httpx.get(f"{node.url}/protected", headers=bearer(access)).status_code == 200
    assert ready.json()["backfilled"] is True
    assert ready.json()["stale"] is True
    resp = httpx.get(f"{node.url}/protected", headers=bearer(revoked))
    assert (resp.status_code, resp.json()) == (401, {"msg": "Token has been revoked"})

    redis_server.start()
    deadline = time.monotonic() + 15
    while (resp := httpx.get(f"{node.url}/readyz", timeout=2)).json()["stale"]:
        assert time.monotonic() < deadline, resp.text
        time.sleep(0.05)
    assert resp.status_code == 200, resp.text
    assert httpx.get(f"{node.url}/protected", headers=bearer(access)).status_code == 200
    resp = httpx.get(f"{node.url}/protected", headers=bearer(revoked))
    assert (resp.status_code, resp.json()) == (401, {"msg": "Token has been revoked"})


def test_logout_with_store_down_is_503_and_token_stays_valid(
    start_node: NodeFactory, redis_url: str, redis_server: RedisServer
) -> None:
    # The store is a private redis-server; the bus is the shared Redis.
    node = start_node(base_env(redis_url, f"{redis_server.url}?prefix=revsync-test"))
    access = login(node)["access_token"]
    redis_server.kill()
    resp = httpx.delete(f"{node.url}/logout", headers=bearer(access), timeout=30)
    assert resp.status_code == 503
    assert "NOT revoked" in resp.json()["msg"]
    resp = httpx.get(f"{node.url}/protected", headers=bearer(access))
    assert (resp.status_code, resp.json()) == (200, {"hello": "world"})
    resp = httpx.post(f"{node.url}/logout/all", headers=bearer(access), timeout=30)
    assert resp.status_code == 503
    assert httpx.get(f"{node.url}/protected", headers=bearer(access)).status_code == 200
