"""Every endpoint answers bad input with a clean 4xx JSON error, never a 500 or HTML."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.processes import API_APP, Node, free_port, run
from tests.services.conftest import ADMIN, NodeFactory, base_env, bearer, login

JSON_ENDPOINTS = [
    ("POST", "/login"),
    ("POST", "/admin/revoke"),
    ("POST", "/admin/unrevoke"),
    ("POST", "/admin/revoke-identity"),
    ("POST", "/admin/unrevoke-identity"),
]
ADMIN_ENDPOINTS = [*JSON_ENDPOINTS[1:], ("GET", "/admin/revocations?identity=test")]
AUTH = {"X-Admin-Token": ADMIN}


@pytest.fixture(scope="module")
def node(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("bad-input")
    factory = NodeFactory(tmp)
    try:
        yield factory(base_env(redis_url, f"sqlite:///{tmp / 'revsync.db'}"))
    finally:
        factory.stop()


def _assert_json_error(resp: httpx.Response, status: int | tuple[int, ...]) -> None:
    expected = status if isinstance(status, tuple) else (status,)
    assert resp.status_code in expected, (resp.status_code, resp.text)
    assert resp.headers["content-type"] == "application/json"
    assert isinstance(resp.json()["msg"], str)
    assert resp.json()["msg"]


@pytest.mark.parametrize(("method", "path"), JSON_ENDPOINTS)
@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"username": "test"', "application/json", 400),  # malformed
        (b"", "application/json", 400),  # empty
        (b"[1, 2]", "application/json", 400),  # not an object
        (b'"text"', "application/json", 400),
        (b"{}", "application/json", 400),  # missing fields
        (b'{"username": 1, "password": [], "jti": 5, "identity": null}', "application/json", 400),
        (b"username=test&password=test", "application/x-www-form-urlencoded", 415),
        (b'{"username": "test", "password": "test"}', "text/plain", 415),
        (b"\xff\xfe\x00garbage", "application/json", 400),
    ],
)
def test_bad_bodies(
    node: Node, method: str, path: str, content: bytes, content_type: str, status: int
) -> None:
    headers = {"Content-Type": content_type, **AUTH}
    resp = httpx.request(method, f"{node.url}{path}", content=content, headers=headers)
    _assert_json_error(resp, status)


def test_oversized_body_413(node: Node) -> None:
    body = b'{"username": "' + b"x" * 200_000 + b'"}'
    resp = httpx.post(
        f"{node.url}/login", content=body, headers={"Content-Type": "application/json"}
    )
    _assert_json_error(resp, 413)


@pytest.mark.parametrize(
    "body",
    [
        {"jti": "a" * 600},
        {"jti": "x", "exp": "tomorrow"},
        {"jti": "x", "exp": True},
        {"jti": ""},
    ],
)
def test_admin_revoke_bad_values(node: Node, body: dict[str, object]) -> None:
    resp = httpx.post(f"{node.url}/admin/revoke", json=body, headers=AUTH)
    _assert_json_error(resp, 400)


@pytest.mark.parametrize(("method", "path"), ADMIN_ENDPOINTS)
@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"X-Admin-Token": "wrong"}, 403), ({"X-Admin-Token": ADMIN + "x"}, 403)],
)
def test_admin_guard(
    node: Node, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    resp = httpx.request(
        method, f"{node.url}{path}", json={"jti": "x", "identity": "test"}, headers=headers
    )
    _assert_json_error(resp, status)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/admin/revoke", {"jti": "x", "identity": "i" * 600}),
        ("/admin/revoke-identity", {"identity": "i" * 600}),
        ("/admin/revoke-identity", {"identity": "é" * 500 + "x" * 12}),  # fits 512, not the event
        ("/admin/unrevoke-identity", {"identity": "i" * 513}),
    ],
)
def test_admin_refuses_an_identity_too_long_for_the_bus_and_writes_nothing(
    node: Node, path: str, body: dict[str, object]
) -> None:
    """Issue 12, finding 8, through the API: 400, and nothing in the store."""
    resp = httpx.post(f"{node.url}{path}", json=body, headers=AUTH)
    _assert_json_error(resp, 400)
    # Nothing was written: the next write the store numbers is the first one after
    # whatever was there before.
    before = httpx.post(f"{node.url}/admin/revoke-identity", json={"identity": "a"}, headers=AUTH)
    after = httpx.post(f"{node.url}/admin/revoke-identity", json={"identity": "b"}, headers=AUTH)
    assert after.json()["change"]["seq"] == before.json()["change"]["seq"] + 1
    resp = httpx.post(f"{node.url}{path}", json=body, headers=AUTH)
    _assert_json_error(resp, 400)
    last = httpx.post(f"{node.url}/admin/revoke-identity", json={"identity": "c"}, headers=AUTH)
    assert last.json()["change"]["seq"] == after.json()["change"]["seq"] + 1


def test_admin_list_needs_identity(node: Node) -> None:
    _assert_json_error(httpx.get(f"{node.url}/admin/revocations", headers=AUTH), 400)


def test_admin_disabled_without_token(
    start_node: NodeFactory, redis_url: str, sqlite_url: str
) -> None:
    env = base_env(redis_url, sqlite_url)
    del env["REVSYNC_ADMIN_TOKEN"]
    node = start_node(env)
    resp = httpx.post(f"{node.url}/admin/unrevoke", json={"jti": "x"}, headers=AUTH)
    _assert_json_error(resp, 403)
    assert "disabled" in resp.json()["msg"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/protected"),
        ("DELETE", "/logout"),
        ("DELETE", "/logout2"),
        ("POST", "/refresh"),
        ("POST", "/logout/all"),
    ],
)
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer garbage"}, 422),
        ({"Authorization": "Token abc"}, 422),
        ({"Authorization": "Bearer " + "a" * 100_000}, (400, 422, 431)),
    ],
)
def test_token_endpoints_bad_auth(
    node: Node, method: str, path: str, headers: dict[str, str], status: int | tuple[int, ...]
) -> None:
    resp = httpx.request(method, f"{node.url}{path}", headers=headers)
    assert resp.status_code < 500
    if resp.status_code != 431:  # hypercorn itself refuses an oversized header
        _assert_json_error(resp, status)


def test_wrong_token_type(node: Node) -> None:
    tokens = login(node)
    resp = httpx.get(f"{node.url}/protected", headers=bearer(tokens["refresh_token"]))
    _assert_json_error(resp, 422)
    resp = httpx.post(f"{node.url}/refresh", headers=bearer(tokens["access_token"]))
    _assert_json_error(resp, 422)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("GET", "/login", 405),
        ("PUT", "/logout", 405),
        ("POST", "/readyz", 405),
    ],
)
def test_unknown_routes_and_methods(node: Node, method: str, path: str, status: int) -> None:
    _assert_json_error(httpx.request(method, f"{node.url}{path}"), status)


BAD_CONFIG = [
    ({"JWT_SECRET_KEY": "short"}, "at least 32 bytes"),
    ({"JWT_SECRET_KEY": ""}, "JWT_SECRET_KEY is not set"),
    ({"REVSYNC_ADMIN_TOKEN": "tiny"}, "REVSYNC_ADMIN_TOKEN"),
    ({"REVSYNC_MAX_STALENESS": "soon"}, "REVSYNC_MAX_STALENESS"),
    ({"REVSYNC_STORE_URL": "ftp://x"}, "REVSYNC_STORE_URL"),
    ({"REVSYNC_REDIS_URL": "http://x"}, "REVSYNC_REDIS_URL"),
    ({"JWT_ACCESS_TOKEN_EXPIRES": "-5"}, "JWT_ACCESS_TOKEN_EXPIRES"),
]
SINGLE = ["--workers", "0"]


@pytest.mark.parametrize(
    ("env", "message", "workers"),
    [(env, message, SINGLE) for env, message in BAD_CONFIG]
    # The README's form of the command (hypercorn's default worker process) once.
    + [(BAD_CONFIG[0][0], BAD_CONFIG[0][1], [])],
)
def test_refuses_to_start_with_bad_config(
    redis_url: str, tmp_path: Path, env: dict[str, str], message: str, workers: list[str]
) -> None:
    full = base_env(redis_url, f"sqlite:///{tmp_path / 'x.db'}", **env)
    command = [sys.executable, "-m", "hypercorn", API_APP, "--bind", f"127.0.0.1:{free_port()}"]
    proc = run([*command, *workers], env=full, timeout=30)
    # hypercorn 0.18 exits 0 when its worker process fails (run() re-reads the exit
    # code of an already emptied worker list), so only the single-process form
    # (--workers 0) carries our non-zero status through.
    if workers:
        assert proc.returncode != 0
    assert message in proc.stderr
    assert "services.api: cannot start" in proc.stderr
    assert "Traceback" not in proc.stderr
