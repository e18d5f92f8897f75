"""A token the node cannot judge is answered 503 + Retry-After, never 401 "revoked".

Clients treat 401 as "log the user out": a node that is not ready yet, stopped, or
(in fail-closed mode) stale must say "retry", while a token it knows to be revoked
still gets 401 "Token has been revoked".  Over HTTP, through Quart's test client.
"""

from __future__ import annotations

from typing import Any

from quart import Quart, jsonify

from revsync import RevSync
from revsync.jwt import (
    RevocationStateUnavailable,
    create_access_token,
)
from tests.conftest import free_port
from tests.engine.conftest import logout_app

REVOKED = {"msg": "Token has been revoked"}


def _app(sqlite_url: str, redis_url: str, channel: str, **settings: Any) -> tuple[Quart, RevSync]:
    settings.setdefault("resync_interval", 3)
    return logout_app(store_url=sqlite_url, redis_url=redis_url, channel=channel, **settings)


async def _token(app: Quart, identity: str = "alice") -> dict[str, str]:
    async with app.app_context():
        return {"Authorization": f"Bearer {create_access_token(identity=identity)}"}


async def test_a_never_started_app_answers_503_with_a_hint(
    sqlite_url: str, redis_url: str, channel: str
) -> None:
    """``app.test_client()`` without ``test_app()``: the before_serving hook never ran."""
    app, _ = _app(sqlite_url, redis_url, channel)
    headers = await _token(app)
    response = await app.test_client().get("/protected", headers=headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "3"  # REVSYNC_RESYNC_INTERVAL
    body = await response.get_json()
    assert body != REVOKED
    assert body["msg"].startswith("Revocation state is unavailable")
    assert "test_app()" in body["msg"]
    assert "before_serving" in body["msg"]


async def test_the_message_goes_under_jwt_error_message_key(
    sqlite_url: str, redis_url: str, channel: str
) -> None:
    app, _ = _app(
        sqlite_url, redis_url, channel, resync_interval=0.2, config={"JWT_ERROR_MESSAGE_KEY": "e"}
    )
    response = await app.test_client().get("/protected", headers=await _token(app))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"  # never below one second
    assert list(await response.get_json()) == ["e"]


async def test_the_answer_is_configurable(sqlite_url: str, redis_url: str, channel: str) -> None:
    app, _ = _app(sqlite_url, redis_url, channel)
    seen: list[RevocationStateUnavailable] = []

    @app.extensions["revsync.jwt"].revocation_unavailable_loader
    async def unavailable(error: RevocationStateUnavailable) -> Any:
        seen.append(error)
        return jsonify(code="revsync_unavailable", retry=error.retry_after), 429

    response = await app.test_client().get("/protected", headers=await _token(app))
    assert response.status_code == 429
    assert await response.get_json() == {"code": "revsync_unavailable", "retry": 3}
    assert len(seen) == 1
    assert "never started" in seen[0].reason


async def test_a_stopped_node_still_refuses_what_it_knows_is_revoked(
    sqlite_url: str, redis_url: str, channel: str
) -> None:
    app, revsync = _app(sqlite_url, redis_url, channel)
    client = app.test_client()
    revoked, fresh = await _token(app, "alice"), await _token(app, "bob")
    async with app.test_app():
        assert (await client.get("/protected", headers=fresh)).status_code == 200
        assert (await client.delete("/logout", headers=revoked)).status_code == 200
        response = await client.get("/protected", headers=revoked)
        assert (response.status_code, await response.get_json()) == (401, REVOKED)
    assert not revsync.ready
    response = await client.get("/protected", headers=revoked)
    assert (response.status_code, await response.get_json()) == (401, REVOKED)
    response = await client.get("/protected", headers=fresh)
    assert response.status_code == 503
    assert "stopped" in (await response.get_json())["msg"]


async def test_a_node_still_syncing_answers_503(sqlite_url: str, channel: str) -> None:
    """REVSYNC_WAIT_FOR_READY=false and a bus nothing listens on: serving, never synced."""
    dead_bus = f"redis://127.0.0.1:{free_port()}/0"
    app, revsync = _app(sqlite_url, dead_bus, channel, wait_for_ready=False)
    async with app.test_app():
        response = await app.test_client().get("/protected", headers=await _token(app))
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "3"
        assert "start-up sync" in (await response.get_json())["msg"]
        assert revsync.is_revoked({"jti": "x", "iat": 0})  # the plain bool still refuses


async def test_allowlist_mode_answers_503_for_tokens_it_cannot_judge(
    sqlite_url: str, redis_url: str, channel: str
) -> None:
    app, revsync = _app(sqlite_url, redis_url, channel, track_tokens=True, mode="allowlist")
    client = app.test_client()

    @app.route("/login", methods=["POST"])
    async def login() -> Any:
        return jsonify(access_token=(await revsync.registry.issue_tokens("alice")).access_token)

    async with app.test_app():
        tokens = [(await (await client.post("/login")).get_json())["access_token"] for _ in "ab"]
        revoked, fresh = ({"Authorization": f"Bearer {t}"} for t in tokens)
        assert (await client.get("/protected", headers=fresh)).status_code == 200
        assert (await client.delete("/logout", headers=revoked)).status_code == 200
    response = await client.get("/protected", headers=revoked)
    assert (response.status_code, await response.get_json()) == (401, REVOKED)
    response = await client.get("/protected", headers=fresh)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "3"
    # A token not issued through the registry is refused in every state.
    response = await client.get("/protected", headers=await _token(app))
    assert (response.status_code, await response.get_json()) == (401, REVOKED)
