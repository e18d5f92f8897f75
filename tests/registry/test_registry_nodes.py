"""The token registry across real node processes: sessions, allowlist, rotation."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import httpx
import jwt
import pytest

from services.processes import Node
from tests.services.conftest import ADMIN, SECRET, NodeFactory, base_env, bearer

TRACKED = {"REVSYNC_TRACK_TOKENS": "true"}
ALLOWLIST = {**TRACKED, "REVSYNC_MODE": "allowlist"}
ROTATING = {**TRACKED, "REVSYNC_ROTATE_REFRESH": "true"}


def _cluster(
    start_node: NodeFactory, redis_url: str, store_url: str, count: int, **extra: str
) -> list[Node]:
    env = base_env(redis_url, store_url, **extra)
    return [start_node(env) for _ in range(count)]


def _login(node: Node, http: httpx.Client, device: str = "laptop") -> dict[str, str]:
    resp = http.post(
        f"{node.url}/login",
        json={"username": "test", "password": "test", "device": device},
        headers={"User-Agent": f"test-agent/{device}"},
    )
    assert resp.status_code == 200, resp.text
    tokens: dict[str, str] = resp.json()
    return tokens


def _jti(token: str) -> str:
    jti: str = jwt.decode(token, options={"verify_signature": False})["jti"]
    return jti


@pytest.mark.parametrize("store", ["sqlite", "postgres", "redis"])
def test_sessions_list_and_log_out_one(
    start_node: NodeFactory, redis_url: str, store_url_for: Callable[[str], str], store: str
) -> None:
    a, b = _cluster(start_node, redis_url, store_url_for(store), 2, **TRACKED)
    http = httpx.Client(timeout=5)
    laptop = _login(a, http, "laptop")
    phone = _login(b, http, "phone")

    resp = http.get(f"{b.url}/sessions", headers=bearer(laptop["access_token"]))
    assert resp.status_code == 200, resp.text
    sessions = resp.json()["sessions"]
    assert {s["metadata"]["device"] for s in sessions} == {"laptop", "phone"}
    assert {s["type"] for s in sessions} == {"access", "refresh"}
    assert all(s["metadata"]["user_agent"].startswith("test-agent/") for s in sessions)
    current = [s for s in sessions if s["current"]]
    assert [s["jti"] for s in current] == [_jti(laptop["access_token"])]

    # Log out the phone from the laptop: refused on every node, gone from the list.
    phone_jti = _jti(phone["access_token"])
    resp = http.delete(f"{a.url}/sessions/{phone_jti}", headers=bearer(laptop["access_token"]))
    assert resp.status_code == 200, resp.text
    for node in (a, b):
        deadline = time.monotonic() + 5
        while True:
            got = http.get(f"{node.url}/protected", headers=bearer(phone["access_token"]))
            if got.status_code == 401 or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert got.status_code == 401
    listed = http.get(f"{a.url}/sessions", headers=bearer(laptop["access_token"])).json()
    assert phone_jti not in {s["jti"] for s in listed["sessions"]}

    # Someone else's jti and an unknown one are both "no such session".
    assert (
        http.delete(
            f"{a.url}/sessions/{uuid.uuid4()}", headers=bearer(laptop["access_token"])
        ).status_code
        == 404
    )

    # Admin: list, revoke, unrevoke by jti; 404 for unknown.
    admin = {"X-Admin-Token": ADMIN}
    listed = http.get(f"{b.url}/admin/tokens", params={"identity": "test"}, headers=admin)
    assert listed.status_code == 200
    laptop_jti = _jti(laptop["access_token"])
    assert laptop_jti in {t["jti"] for t in listed.json()["tokens"]}
    assert http.post(f"{b.url}/admin/tokens/{laptop_jti}/revoke", headers=admin).status_code == 200
    assert http.get(f"{b.url}/protected", headers=bearer(laptop["access_token"])).status_code == 401
    assert (
        http.post(f"{a.url}/admin/tokens/{laptop_jti}/unrevoke", headers=admin).status_code == 200
    )
    assert http.get(f"{a.url}/protected", headers=bearer(laptop["access_token"])).status_code == 200
    unknown = uuid.uuid4()
    assert http.post(f"{a.url}/admin/tokens/{unknown}/revoke", headers=admin).status_code == 404
    assert http.post(f"{a.url}/admin/tokens/{unknown}/unrevoke", headers=admin).status_code == 404

    # Bad metadata is refused with a clear error.
    bad = http.post(f"{a.url}/login", json={"username": "test", "password": "test", "device": 5})
    assert bad.status_code == 400
    bad = http.post(
        f"{a.url}/login", json={"username": "test", "password": "test", "device": "x" * 2000}
    )
    assert bad.status_code == 400
    assert "metadata" in bad.json()["msg"]


@pytest.mark.parametrize("store", ["sqlite", "postgres", "redis"])
def test_allowlist_first_request_on_other_nodes_succeeds(
    start_node: NodeFactory, redis_url: str, store_url_for: Callable[[str], str], store: str
) -> None:
    nodes = _cluster(start_node, redis_url, store_url_for(store), 3, **ALLOWLIST)
    first, others = nodes[0], nodes[1:]
    for _ in range(10):
        # Each client has its own connections, and uses the token the instant it has it.
        with httpx.Client(timeout=5) as http:
            tokens = _login(first, http)
            for node in others:
                got = http.get(f"{node.url}/protected", headers=bearer(tokens["access_token"]))
                assert got.status_code == 200, (node.name, got.text)

    now = int(time.time())
    forged = jwt.encode(
        {
            "jti": str(uuid.uuid4()),
            "identity": "test",
            "type": "access",
            "fresh": False,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        },
        SECRET,
        algorithm="HS256",
    )
    with httpx.Client(timeout=5) as http:
        for node in nodes:
            got = http.get(f"{node.url}/protected", headers=bearer(forged))
            assert got.status_code == 401, (node.name, got.text)
            # Even when it claims a registry seq the node has not seen yet: a bounded wait.
            started = time.monotonic()
            lying = jwt.encode(
                {**jwt.decode(forged, options={"verify_signature": False}), "rsq": 10**12},
                SECRET,
                algorithm="HS256",
            )
            assert http.get(f"{node.url}/protected", headers=bearer(lying)).status_code == 401
            assert time.monotonic() - started < 3


def test_allowlist_without_tracking_fails_at_start_up(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)  # for the module-level app of the import
    from services.api.app import create_app
    from services.api.settings import ConfigError

    env = base_env(redis_url, "sqlite:///unused.db", REVSYNC_MODE="allowlist")
    with pytest.raises(ConfigError, match="REVSYNC_TRACK_TOKENS"):
        create_app(env)
    # Every built-in store keeps token records, Redis included.
    app = create_app(base_env(redis_url, "redis://127.0.0.1:6379/0", **ALLOWLIST))
    assert app.extensions["revsync"].registry is not None


def test_tracking_with_a_store_without_token_records_fails() -> None:
    from quart import Quart

    from revsync import RevSync

    class Bare:
        url = "custom://bare"

    app = Quart(__name__)
    app.config.update(REVSYNC_TRACK_TOKENS=True, REVSYNC_REDIS_URL="redis://127.0.0.1:6379/0")
    with pytest.raises(ValueError, match=r"REVSYNC_STORE_URL=custom://bare.*Bare"):
        RevSync(app, store=Bare())  # type: ignore[arg-type]


@pytest.mark.parametrize("store", ["sqlite", "postgres", "redis"])
def test_rotation_and_reuse_revokes_the_family(
    start_node: NodeFactory, redis_url: str, store_url_for: Callable[[str], str], store: str
) -> None:
    a, b = _cluster(start_node, redis_url, store_url_for(store), 2, **ROTATING)
    http = httpx.Client(timeout=5)
    tokens = _login(a, http)
    old_refresh = tokens["refresh_token"]

    rotated = http.post(f"{b.url}/refresh", headers=bearer(old_refresh))
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert _jti(new["refresh_token"]) != _jti(old_refresh)
    claims = jwt.decode(new["refresh_token"], options={"verify_signature": False})
    assert claims["fam"] == jwt.decode(old_refresh, options={"verify_signature": False})["fam"]
    assert http.get(f"{a.url}/protected", headers=bearer(new["access_token"])).status_code == 200

    # The stolen old token comes back: refused, and the whole family dies everywhere.
    reused = http.post(f"{a.url}/refresh", headers=bearer(old_refresh))
    assert reused.status_code == 401
    for node in (a, b):
        for token in (new["access_token"], tokens["access_token"]):
            deadline = time.monotonic() + 5
            while True:
                got = http.get(f"{node.url}/protected", headers=bearer(token))
                if got.status_code == 401 or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            assert got.status_code == 401, node.name
        assert (
            http.post(f"{node.url}/refresh", headers=bearer(new["refresh_token"])).status_code
            == 401
        )
    assert "revsync.refresh_token_reused" in a.log_tail()


@pytest.mark.parametrize("store", ["sqlite", "postgres", "redis"])
def test_concurrent_refresh_on_two_nodes_only_one_wins(
    start_node: NodeFactory, redis_url: str, store_url_for: Callable[[str], str], store: str
) -> None:
    a, b = _cluster(start_node, redis_url, store_url_for(store), 2, **ROTATING)
    for _ in range(5):
        refresh = _login(a, httpx.Client(timeout=5))["refresh_token"]
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def go(
            node: Node,
            token: str = refresh,
            barrier: threading.Barrier = barrier,
            statuses: list[int] = statuses,
        ) -> None:
            with httpx.Client(timeout=10) as http:
                barrier.wait()
                statuses.append(http.post(f"{node.url}/refresh", headers=bearer(token)).status_code)

        threads = [threading.Thread(target=go, args=(node,)) for node in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200, 401]
