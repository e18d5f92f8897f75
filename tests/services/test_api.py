"""Three API nodes as real hypercorn processes against real Redis and each store."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from services.processes import Node
from tests.services.conftest import ADMIN, STORES, NodeFactory, base_env, bearer, login

PROPAGATION_BOUND = 2.0


@pytest.fixture(scope="module", params=STORES)
def nodes(
    request: pytest.FixtureRequest,
    store_url_for: Callable[[str], str],
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Node]]:
    env = base_env(redis_url, store_url_for(request.param))
    factory = NodeFactory(tmp_path_factory.mktemp(f"nodes-{request.param}"))
    try:
        yield factory.cluster(env)
    finally:
        factory.stop()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def refused_within(nodes: list[Node], token: str, bound: float, start: float) -> list[float]:
    """Poll each node (in parallel) until it answers 401 revoked; seconds after ``start``."""

    def poll(node: Node) -> float:
        with httpx.Client(timeout=5) as client:
            while True:
                resp = client.get(f"{node.url}/protected", headers=bearer(token))
                if resp.status_code == 401:
                    assert resp.json() == {"msg": "Token has been revoked"}
                    return time.perf_counter() - start
                assert resp.status_code == 200, resp.text
                if time.perf_counter() - start > bound:
                    pytest.fail(f"{node.name} still accepts a revoked token after {bound}s")
                time.sleep(0.002)

    with ThreadPoolExecutor(len(nodes)) as pool:
        return list(pool.map(poll, nodes))


def test_seed_flow_across_nodes(nodes: list[Node], http: httpx.Client) -> None:
    n1, n2, n3 = nodes
    tokens = login(n1, http)
    assert set(tokens) == {"access_token", "refresh_token"}
    access, refresh = tokens["access_token"], tokens["refresh_token"]

    resp = http.get(f"{n2.url}/protected", headers=bearer(access))
    assert (resp.status_code, resp.json()) == (200, {"hello": "world"})
    resp = http.post(f"{n3.url}/refresh", headers=bearer(refresh))
    assert resp.status_code == 200
    assert set(resp.json()) == {"access_token"}

    start = time.perf_counter()
    resp = http.delete(f"{n3.url}/logout", headers=bearer(access))
    assert (resp.status_code, resp.json()) == (200, {"msg": "Successfully logged out"})
    # The revoking node refuses at once; the others within the bound.
    assert http.get(f"{n3.url}/protected", headers=bearer(access)).status_code == 401
    lags = refused_within([n1, n2], access, PROPAGATION_BOUND, start)
    assert max(lags) < PROPAGATION_BOUND

    resp = http.delete(f"{n1.url}/logout2", headers=bearer(refresh))
    assert (resp.status_code, resp.json()) == (200, {"msg": "Successfully logged out"})
    for node in nodes:
        deadline = time.monotonic() + PROPAGATION_BOUND
        while (
            resp := http.post(f"{node.url}/refresh", headers=bearer(refresh))
        ).status_code == 200:
            assert time.monotonic() < deadline, f"{node.name} still refreshes"
            time.sleep(0.01)
        assert (resp.status_code, resp.json()) == (401, {"msg": "Token has been revoked"})


def test_login_bad_credentials(nodes: list[Node], http: httpx.Client) -> None:
    resp = http.post(f"{nodes[0].url}/login", json={"username": "test", "password": "nope"})
    assert (resp.status_code, resp.json()) == (401, {"msg": "Bad username or password"})


def test_logout_all_refused_everywhere(nodes: list[Node], http: httpx.Client) -> None:
    time.sleep(1.01)  # tokens issued in an earlier second than any earlier logout/all
    first, second = login(nodes[0], http), login(nodes[1], http)
    start = time.perf_counter()
    resp = http.post(f"{nodes[2].url}/logout/all", headers=bearer(first["access_token"]))
    assert resp.status_code == 200, resp.text
    for tokens in (first, second):
        refused_within(nodes, tokens["access_token"], PROPAGATION_BOUND, start)
        for node in nodes:
            r = http.post(f"{node.url}/refresh", headers=bearer(tokens["refresh_token"]))
            assert r.status_code == 401


def test_admin_revoke_unrevoke_and_list(nodes: list[Node], http: httpx.Client) -> None:
    n1, n2, n3 = nodes
    time.sleep(1.01)  # past any earlier logout/all cut-off of this identity
    access = login(n1, http)["access_token"]
    jti = _claims(access)["jti"]
    admin = {"X-Admin-Token": ADMIN}

    start = time.perf_counter()
    resp = http.post(f"{n1.url}/admin/revoke", json={"jti": jti, "identity": "test"}, headers=admin)
    assert resp.status_code == 200, resp.text
    assert resp.json()["change"]["key"] == jti
    refused_within([n2, n3], access, PROPAGATION_BOUND, start)

    listed = http.get(f"{n2.url}/admin/revocations", params={"identity": "test"}, headers=admin)
    assert listed.status_code == 200
    assert jti in {row["key"] for row in listed.json()["revocations"]}

    resp = http.post(f"{n2.url}/admin/unrevoke", json={"jti": jti}, headers=admin)
    assert resp.status_code == 200, resp.text
    for node in nodes:
        deadline = time.monotonic() + PROPAGATION_BOUND
        while http.get(f"{node.url}/protected", headers=bearer(access)).status_code != 200:
            assert time.monotonic() < deadline, f"{node.name} still refuses an unrevoked token"
            time.sleep(0.01)

    resp = http.post(f"{n3.url}/admin/revoke-identity", json={"identity": "test"}, headers=admin)
    assert resp.status_code == 200, resp.text
    refused_within(nodes, access, PROPAGATION_BOUND, time.perf_counter())
    listed = http.get(f"{n1.url}/admin/revocations", params={"identity": "test"}, headers=admin)
    assert {"identity"} <= {row["kind"] for row in listed.json()["revocations"]}
    resp = http.post(f"{n1.url}/admin/unrevoke-identity", json={"identity": "test"}, headers=admin)
    assert resp.status_code == 200, resp.text


def test_health_ready_and_metrics(nodes: list[Node], http: httpx.Client) -> None:
    for node in nodes:
        health = http.get(f"{node.url}/healthz")
        assert health.status_code == 200
        assert health.json()["node_id"] == node.name
        ready = http.get(f"{node.url}/readyz")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True

    n1, n2, _ = nodes
    before = _metrics(http, n2)
    access = login(n1, http)["access_token"]
    assert http.delete(f"{n1.url}/logout", headers=bearer(access)).status_code == 200
    refused_within([n2], access, PROPAGATION_BOUND, time.perf_counter())
    publisher = _metrics(http, n1)
    after = _metrics(http, n2)
    assert publisher["revsync_revocations_published_total"] >= 1
    assert after["revsync_revocations_applied_total"] > before["revsync_revocations_applied_total"]
    assert after["revsync_propagation_lag_seconds_count"] > before.get(
        "revsync_propagation_lag_seconds_count", 0
    )
    assert after['revsync_entries{kind="jti"}'] >= 1
    assert after["revsync_resyncs_total"] >= 1
    assert 0 <= time.time() - after["revsync_last_sync_timestamp_seconds"] < 5
    assert after["revsync_ready"] == 1
    assert after["revsync_store_epoch"] >= 1
    # The logout's store write, timed on the node that wrote it.
    assert publisher["revsync_store_write_duration_seconds_count"] >= 1
    assert publisher["revsync_store_write_failures_total"] == 0
    assert "revsync_store_pruned_rows_total" in publisher
    text = http.get(f"{n2.url}/metrics").text
    assert "# TYPE revsync_events_rejected_total counter" in text
    assert "# TYPE revsync_propagation_lag_seconds histogram" in text


def _metrics(http: httpx.Client, node: Node) -> dict[str, float]:
    resp = http.get(f"{node.url}/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    values = {}
    for line in resp.text.splitlines():
        match = re.match(r"^(\S+) (\S+)$", line)
        if match and not line.startswith("#"):
            values[match[1]] = float(match[2])
    return values


def _claims(token: str) -> dict[str, object]:
    import jwt

    claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return claims
