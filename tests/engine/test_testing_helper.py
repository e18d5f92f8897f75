"""revsync.testing.running: what an app's own tests use to get a ready node, no Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from quart import Quart, jsonify

import revsync.testing
from revsync import RevSync
from revsync._memory_bus import MemoryBus
from revsync.jwt import JWTManager, create_access_token, get_raw_jwt, jwt_required

NOWHERE = "redis://127.0.0.1:1/0"
"""A Redis URL nothing answers at: the app's production setting, unusable in tests."""


def seed_app(**config: Any) -> Quart:
    """The seed program's shape: login, logout through revsync, a protected page."""
    app = Quart(__name__)
    app.config.update(JWT_SECRET_KEY="k" * 32, JWT_BLACKLIST_ENABLED=True, **config)
    JWTManager(app)

    @app.route("/login", methods=["POST"])
    async def login() -> Any:
        return jsonify(access_token=create_access_token(identity="test"))

    @app.route("/logout", methods=["DELETE"])
    @jwt_required
    async def logout() -> Any:
        await app.extensions["revsync"].revoke(get_raw_jwt())
        return jsonify(msg="Successfully logged out")

    @app.route("/protected")
    @jwt_required
    async def protected() -> Any:
        return jsonify(hello="world")

    return app


async def login_logout(app: Quart, client: Any) -> None:
    token = (await (await client.post("/login")).get_json())["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/protected", headers=bearer)).status_code == 200
    assert (await client.delete("/logout", headers=bearer)).status_code == 200
    refused = await client.get("/protected", headers=bearer)
    assert refused.status_code == 401


async def test_an_app_configured_for_redis_runs_on_the_memory_bus() -> None:
    app = seed_app(REVSYNC_REDIS_URL=NOWHERE)
    RevSync(app)  # as the app's own factory does, with its production settings
    async with revsync.testing.running(app) as ext:
        assert ext is app.extensions["revsync"]
        assert isinstance(ext.bus, MemoryBus)
        assert ext.status()["ready"] is True
        store_file = Path(ext.store.url.removeprefix("sqlite:///"))
        assert store_file.parent.name.startswith("revsync-testing-")
        await login_logout(app, app.test_client())  # a plain test client works
    assert not store_file.parent.exists()  # the temporary directory is gone
    assert ext.status()["ready"] is False  # stopped


async def test_an_app_without_revsync_gets_one() -> None:
    app = seed_app()
    async with revsync.testing.running(app, max_staleness=7) as ext:
        assert app.extensions["revsync"] is ext
        assert ext.settings.max_staleness == 7
        await login_logout(app, app.test_client())


async def test_with_the_apps_own_test_app() -> None:
    app = seed_app(REVSYNC_REDIS_URL=NOWHERE)
    RevSync(app)
    started: list[bool] = []

    @app.before_serving
    async def own_start_up() -> None:
        started.append(True)

    async with revsync.testing.running(app) as ext, app.test_app() as test_app:
        assert started == [True]  # the app's own start-up ran, revsync's did not twice
        # The app's own, revsync's once, and the JWT layer's settings check.
        assert len(app.before_serving_funcs) == 3
        assert app.before_serving_funcs.count(ext.start) == 1
        await login_logout(app, test_app.test_client())
        assert ext.status()["entries"]["jti"] == 1


async def test_two_apps_share_a_bus_and_a_store(tmp_path: Path) -> None:
    shared = {"redis_url": "memory://two-apps", "store_url": f"sqlite:///{tmp_path / 'r.db'}"}
    a, b = seed_app(), seed_app()
    async with (
        revsync.testing.running(a, resync_interval=600, **shared) as ext_a,
        revsync.testing.running(b, resync_interval=600, **shared) as ext_b,
    ):
        client_a, client_b = a.test_client(), b.test_client()
        token = (await (await client_a.post("/login")).get_json())["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await client_b.get("/protected", headers=bearer)).status_code == 200
        assert (await client_a.delete("/logout", headers=bearer)).status_code == 200
        for _ in range(500):
            if (await client_b.get("/protected", headers=bearer)).status_code == 401:
                break
        else:
            pytest.fail("node b never refused the token node a revoked")
        assert ext_b.stats.applied == 1  # over the bus, not the (far away) resync timer
        assert ext_a.store.url == ext_b.store.url


async def test_a_running_revsync_is_not_reconfigured() -> None:
    app = seed_app()
    async with revsync.testing.running(app):
        with pytest.raises(RuntimeError, match="already running"):
            async with revsync.testing.running(app):
                pass
