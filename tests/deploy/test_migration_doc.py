"""docs/migration.md's cookie example, run as written, through a client that honours
cookie paths like a browser (httpx's cookie jar, over ASGI to the Quart app).

Quart's own test client sends every cookie whatever its path, which is how a logout
the browser could never reach went unnoticed: this test uses httpx instead, and
proves first that its client really withholds a cookie outside its path.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import request

from tests.conftest import ROOT

DOC = ROOT / "docs" / "migration.md"
BASE = "http://app.test"


def _block(heading: str) -> str:
    """The first Python block under a heading of the doc."""
    text = DOC.read_text()
    section = text[text.index(f"## {heading}\n") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, heading
    return match[1]


def _swap(code: str, old: str, new: str) -> str:
    assert code.count(old) == 1, f"the doc no longer says {old}"
    return code.replace(old, new)


@pytest.fixture
def app(redis_url: str, channel: str, tmp_path: Path) -> Any:
    namespace: dict[str, Any] = {"__name__": "migration_example"}
    exec(compile(_block("An app that keeps its tokens in cookies"), str(DOC), "exec"), namespace)  # noqa: S102
    app = namespace["app"]
    app.config["REVSYNC_CHANNEL"] = channel  # this test's own bus channel
    revocation = _block("Adding revocation across nodes")
    revocation = _swap(revocation, '"redis://127.0.0.1:6379/0"', repr(redis_url))
    revocation = _swap(revocation, '"sqlite:///revsync.db"', repr(f"sqlite:///{tmp_path}/r.db"))
    exec(compile(revocation, str(DOC), "exec"), namespace)  # noqa: S102

    @app.route("/cookies-seen", methods=["GET"])
    async def cookies_seen() -> dict[str, list[str]]:
        return {"names": sorted(request.cookies)}

    return app


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


async def _login(client: httpx.AsyncClient) -> None:
    answer = await client.post("/token/auth", json={"username": "test", "password": "test"})
    assert answer.status_code == 200, answer.text
    assert set(client.cookies) == {
        "access_token_cookie",
        "refresh_token_cookie",
        "csrf_access_token",
        "csrf_refresh_token",
    }


def _csrf(client: httpx.AsyncClient, name: str) -> dict[str, str]:
    return {"X-CSRF-TOKEN": client.cookies[name]}


def _copy(client: httpx.AsyncClient, app: Any) -> httpx.AsyncClient:
    """What an attacker holding copies of the cookies would send."""
    thief = _client(app)
    for cookie in client.cookies.jar:
        thief.cookies.jar.set_cookie(cookie)
    return thief


async def test_the_client_honours_cookie_paths(app: Any) -> None:
    async with app.test_app(), _client(app) as browser:
        await _login(browser)
        seen = (await browser.get("/cookies-seen")).json()["names"]
        # Path=/api/ and Path=/token/refresh: neither token reaches /cookies-seen.
        assert seen == ["csrf_access_token", "csrf_refresh_token"]
        # So a @jwt_required logout outside /api/ (the doc's old one) could not work.
        answer = await browser.post("/token/remove")
        assert answer.status_code == 200  # the original, cookie-clearing one


async def test_logout_revokes_both_tokens_on_the_server(app: Any) -> None:
    async with app.test_app(), _client(app) as browser:
        await _login(browser)
        hello = await browser.get("/api/example")
        assert hello.status_code == 200, hello.text
        assert hello.json() == {"hello": "test"}
        thief = _copy(browser, app)

        # Without the double submit header the logout is refused.
        assert (await browser.post("/api/logout")).status_code == 401
        answer = await browser.delete(
            "/token/refresh", headers=_csrf(browser, "csrf_refresh_token")
        )
        assert answer.status_code == 200, answer.text
        answer = await browser.post("/api/logout", headers=_csrf(browser, "csrf_access_token"))
        assert answer.status_code == 200, answer.text
        assert not set(browser.cookies) & {"access_token_cookie", "refresh_token_cookie"}

        async with thief:
            refused = await thief.get("/api/example")
            assert refused.status_code == 401
            assert refused.json() == {"msg": "Token has been revoked"}
            refused = await thief.post("/token/refresh", headers=_csrf(thief, "csrf_refresh_token"))
            assert refused.status_code == 401
            assert refused.json() == {"msg": "Token has been revoked"}


async def test_log_out_everywhere(app: Any) -> None:
    async with app.test_app(), _client(app) as phone, _client(app) as laptop:
        await _login(phone)
        await _login(laptop)
        # Refresh still works before: the refresh cookie reaches /token/refresh.
        answer = await laptop.post("/token/refresh", headers=_csrf(laptop, "csrf_refresh_token"))
        assert answer.status_code == 200, answer.text
        answer = await phone.post(
            "/api/logout-everywhere", headers=_csrf(phone, "csrf_access_token")
        )
        assert answer.status_code == 200, answer.text
        refused = await laptop.get("/api/example")
        assert refused.status_code == 401
        assert refused.json() == {"msg": "Token has been revoked"}
        refused = await laptop.post("/token/refresh", headers=_csrf(laptop, "csrf_refresh_token"))
        assert refused.status_code == 401
        assert refused.json() == {"msg": "Token has been revoked"}
