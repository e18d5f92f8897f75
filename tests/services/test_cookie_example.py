"""The cookie example as three real hypercorn processes on one Redis and one SQLite store.

Browser-style clients (httpx with a cookie jar) log in on one node and use their
cookies, with the CSRF double-submit header, on the others; logging out everywhere
on one node makes every node refuse the cookies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest

from services.api.settings import ConfigError
from services.cookie_example.settings import from_env
from services.processes import Node
from tests.services.conftest import NodeFactory, base_env

PROPAGATION_BOUND = 3.0
MISSING_CSRF = {"msg": "Missing CSRF token"}
MISMATCH = {"msg": "CSRF double submit tokens do not match"}
REVOKED = {"msg": "Token has been revoked"}
CREDENTIALS = {"username": "test", "password": "test"}


COOKIE_APP = "services.cookie_example.app:app"


@contextmanager
def cookie_nodes(redis_url: str, workdir: Path) -> Iterator[list[Node]]:
    """Three cookie example nodes on one Redis channel and one SQLite store of their own."""
    env = base_env(
        redis_url,
        f"sqlite:///{workdir / 'revsync.db'}",
        JWT_COOKIE_SECURE="false",  # plain HTTP on loopback; httpx keeps Secure cookies for HTTPS
    )
    factory = NodeFactory(workdir)
    try:
        yield factory.cluster(env, app=COOKIE_APP)
    finally:
        factory.stop()


@pytest.fixture(scope="module")
def nodes(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    """Nodes shared by the tests that revoke single tokens only."""
    with cookie_nodes(redis_url, tmp_path_factory.mktemp("cookie-nodes")) as started:
        yield started


@pytest.fixture
def own_nodes(redis_url: str, tmp_path: Path) -> Iterator[list[Node]]:
    """Nodes for one test: logging the user out everywhere must not leak into others."""
    with cookie_nodes(redis_url, tmp_path) as started:
        yield started


def browser() -> httpx.Client:
    """A client that keeps cookies across requests and hosts, as a browser tab would."""
    return httpx.Client(timeout=5)


def log_in(node: Node, client: httpx.Client) -> httpx.Response:
    response = client.post(f"{node.url}/auth/login", json=CREDENTIALS)
    assert response.status_code == 200, response.text
    return response


def csrf(client: httpx.Client, kind: str = "access") -> dict[str, str]:
    return {"X-CSRF-TOKEN": client.cookies[f"csrf_{kind}_token"]}


def copy_of(client: httpx.Client) -> httpx.Client:
    """Another client holding the same cookies (an attacker's copy, or a second tab)."""
    clone = browser()
    for cookie in client.cookies.jar:
        clone.cookies.jar.set_cookie(cookie)
    return clone


def refused_everywhere(nodes: list[Node], client: httpx.Client, path: str, kind: str) -> None:
    """Every node answers 401 revoked for the client's cookies, within the bound."""
    headers = csrf(client, kind)
    start = time.monotonic()
    for node in nodes:
        while True:
            response = client.post(f"{node.url}{path}", headers=headers)
            if response.status_code == 401:
                assert response.json() == REVOKED, node.name
                break
            assert response.status_code == 200, response.text
            if time.monotonic() - start > PROPAGATION_BOUND:
                pytest.fail(f"{node.name} still accepts revoked cookies")
            time.sleep(0.01)


def test_cookie_attributes_on_login(nodes: list[Node]) -> None:
    with browser() as client:
        response = log_in(nodes[0], client)
    cookies = {}
    for header in response.headers.get_list("set-cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        ((name, morsel),) = parsed.items()
        cookies[name] = morsel
    assert set(cookies) == {
        "access_token_cookie",
        "refresh_token_cookie",
        "csrf_access_token",
        "csrf_refresh_token",
    }
    assert cookies["access_token_cookie"]["path"] == "/"
    assert cookies["refresh_token_cookie"]["path"] == "/auth/"
    for name, morsel in cookies.items():
        assert bool(morsel["httponly"]) is not name.startswith("csrf"), name
        assert morsel["samesite"] == "Lax"
        assert not morsel["secure"]  # JWT_COOKIE_SECURE=false in this test only
        assert not morsel["max-age"]  # session cookies


def test_csrf_double_submit_across_nodes(nodes: list[Node]) -> None:
    n1, n2, n3 = nodes
    with browser() as mine, browser() as theirs:
        log_in(n1, mine)
        log_in(n3, theirs)
        ok = mine.post(f"{n2.url}/protected", headers=csrf(mine))
        assert (ok.status_code, ok.json()) == (200, {"hello": "test", "method": "POST"})
        no_csrf = mine.post(f"{n2.url}/protected")
        assert (no_csrf.status_code, no_csrf.json()) == (401, MISSING_CSRF)
        other = mine.post(f"{n2.url}/protected", headers=csrf(theirs))
        assert (other.status_code, other.json()) == (401, MISMATCH)
        # A safe method needs no CSRF value.
        assert mine.get(f"{n3.url}/protected").status_code == 200
        # The refresh cookie goes only to /auth/ and needs its own CSRF value.
        old_access = mine.cookies["access_token_cookie"]
        wrong = mine.post(f"{n3.url}/auth/refresh", headers=csrf(mine, "access"))
        assert (wrong.status_code, wrong.json()) == (401, MISMATCH)
        refreshed = mine.post(f"{n3.url}/auth/refresh", headers=csrf(mine, "refresh"))
        assert refreshed.status_code == 200, refreshed.text
        assert mine.cookies["access_token_cookie"] != old_access
        assert mine.post(f"{n1.url}/protected", headers=csrf(mine)).status_code == 200


def test_bad_login_and_missing_cookie(nodes: list[Node]) -> None:
    with browser() as client:
        bad = client.post(f"{nodes[0].url}/auth/login", json={"username": "test", "password": "x"})
        assert (bad.status_code, bad.json()) == (401, {"msg": "Bad username or password"})
        assert not client.cookies
        missing = client.post(f"{nodes[1].url}/protected", headers={"X-CSRF-TOKEN": "x"})
        assert (missing.status_code, missing.json()) == (
            401,
            {"msg": 'Missing cookie "access_token_cookie"'},
        )
        # A token sent the API way is not read here: only cookies are enabled.
        log_in(nodes[0], client)
        header = httpx.post(
            f"{nodes[1].url}/protected",
            headers={"Authorization": f"Bearer {client.cookies['access_token_cookie']}"},
        )
        assert (header.status_code, header.json()) == (
            401,
            {"msg": 'Missing cookie "access_token_cookie"'},
        )


def test_logout_revokes_this_session_on_every_node(nodes: list[Node]) -> None:
    n1, n2, n3 = nodes
    with browser() as client, browser() as other_tab:
        log_in(n2, client)
        log_in(n1, other_tab)
        stolen = copy_of(client)
        response = client.post(f"{n3.url}/auth/logout", headers=csrf(client))
        assert response.status_code == 200, response.text
        assert not client.cookies  # deleted by the response
        with stolen:
            refused_everywhere(nodes, stolen, "/protected", "access")
            refused_everywhere(nodes, stolen, "/auth/refresh", "refresh")
        # Another session of the same user is untouched.
        assert other_tab.post(f"{n2.url}/protected", headers=csrf(other_tab)).status_code == 200


def test_log_out_everywhere(own_nodes: list[Node]) -> None:
    nodes = own_nodes
    n1, _, n3 = nodes
    with browser() as laptop, browser() as phone:
        log_in(n1, laptop)
        log_in(n3, phone)
        for node in nodes:
            assert phone.post(f"{node.url}/protected", headers=csrf(phone)).status_code == 200
        stolen = copy_of(laptop)
        response = laptop.post(f"{n1.url}/auth/logout-everywhere", headers=csrf(laptop))
        assert response.status_code == 200, response.text
        assert response.json()["msg"] == "Logged out everywhere"
        assert not laptop.cookies
        with stolen:
            refused_everywhere(nodes, stolen, "/protected", "access")
            refused_everywhere(nodes, stolen, "/auth/refresh", "refresh")
        refused_everywhere(nodes, phone, "/protected", "access")
        refused_everywhere(nodes, phone, "/auth/refresh", "refresh")
        # Safe methods too: the cookie is refused, not just the CSRF-checked requests.
        for node in nodes:
            response = phone.get(f"{node.url}/protected")
            assert (response.status_code, response.json()) == (401, REVOKED)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JWT_COOKIE_SECURE": "maybe"}, "JWT_COOKIE_SECURE must be true or false"),
        ({"JWT_COOKIE_SAMESITE": "sometimes"}, "JWT_COOKIE_SAMESITE must be Strict, Lax or None"),
        (
            {"JWT_COOKIE_SAMESITE": "none", "JWT_COOKIE_SECURE": "false"},
            "JWT_COOKIE_SAMESITE=None needs JWT_COOKIE_SECURE=true",
        ),
        ({"JWT_SECRET_KEY": "short"}, "JWT_SECRET_KEY is 5 bytes"),
    ],
)
def test_bad_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env({"JWT_SECRET_KEY": "s" * 40, **env})


def test_settings_defaults(tmp_path: Path) -> None:
    settings = from_env(
        {"JWT_SECRET_KEY": "s" * 40, "REVSYNC_STORE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    )
    assert {k: settings.config[k] for k in ("JWT_COOKIE_SECURE", "JWT_COOKIE_SAMESITE")} == {
        "JWT_COOKIE_SECURE": True,
        "JWT_COOKIE_SAMESITE": "Lax",
    }
    assert settings.config["JWT_TOKEN_LOCATION"] == ["cookies"]
    assert settings.config["JWT_REFRESH_COOKIE_PATH"] == "/auth/"
