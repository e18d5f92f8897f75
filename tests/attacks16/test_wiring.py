"""Issue 16 attack 3: RevSync and JWTManager wired through ``on_manager`` and payload
hooks, in either order, on one or two apps.  The denylist loader of each app is its
own RevSync's, never another app's; allowlist mode still refuses an unregistered token
and accepts a registered one on another node.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from quart import Quart, jsonify

from revsync import RevSync
from revsync.jwt import JWTManager, create_access_token, decode_token, jwt_required
from revsync.jwt.manager import EXTENSION_KEY

SECRET = "w" * 32


def _app(**config: Any) -> Quart:
    app = Quart(__name__)
    app.config.update(JWT_SECRET_KEY=SECRET, JWT_BLACKLIST_ENABLED=True, **config)

    @app.route("/protected")
    @jwt_required
    async def protected() -> Any:
        return jsonify(ok=True)

    return app


def _loader_owner(app: Quart) -> object:
    manager: JWTManager = app.extensions[EXTENSION_KEY]
    loader = manager._denylist_callback
    assert loader is not None, "the serving manager has no denylist loader"
    return getattr(loader, "__self__", None)


Wiring = Callable[[Quart, dict[str, Any]], RevSync]


def revsync_first(app: Quart, settings: dict[str, Any]) -> RevSync:
    ext = RevSync(app, **settings)
    JWTManager(app)
    return ext


def manager_first(app: Quart, settings: dict[str, Any]) -> RevSync:
    JWTManager(app)
    return RevSync(app, **settings)


def manager_init_app_later(app: Quart, settings: dict[str, Any]) -> RevSync:
    manager = JWTManager()
    ext = RevSync(**settings)
    ext.init_app(app)
    manager.init_app(app)
    return ext


def revsync_init_app_twice(app: Quart, settings: dict[str, Any]) -> RevSync:
    JWTManager(app)
    ext = RevSync(**settings)
    ext.init_app(app)
    ext.init_app(app)
    return ext


def manager_twice_after(app: Quart, settings: dict[str, Any]) -> RevSync:
    ext = RevSync(app, **settings)
    JWTManager(app)
    JWTManager(app)  # e.g. an app factory that sets up the JWT layer again
    return ext


def manager_twice_before(app: Quart, settings: dict[str, Any]) -> RevSync:
    JWTManager(app)
    JWTManager(app)
    return RevSync(app, **settings)


def manager_init_app_twice(app: Quart, settings: dict[str, Any]) -> RevSync:
    manager = JWTManager()
    ext = RevSync(app, **settings)
    manager.init_app(app)
    manager.init_app(app)
    return ext


WIRINGS = [
    revsync_first,
    manager_first,
    manager_init_app_later,
    revsync_init_app_twice,
    manager_twice_after,
    manager_twice_before,
    manager_init_app_twice,
]


@contextlib.asynccontextmanager
async def serving(*apps: Quart) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for app in apps:
            await stack.enter_async_context(app.test_app())
        yield


@pytest.mark.parametrize("wiring", WIRINGS, ids=lambda w: w.__name__)
async def test_two_apps_each_use_their_own_revsync(
    wiring: Wiring, tmp_path: Any, redis_url: str, channel: str
) -> None:
    apps, exts = [], []
    for n in range(2):
        app = _app()
        settings = {
            "store_url": f"sqlite:///{tmp_path / f'{n}.db'}",
            "redis_url": redis_url,
            "channel": f"{channel}-{n}",
            "startup_timeout": 10,
        }
        exts.append(wiring(app, settings))
        apps.append(app)
    for app, ext in zip(apps, exts, strict=True):
        assert app.extensions["revsync"] is ext
        assert _loader_owner(app) is ext, "the loader is not this app's RevSync"
    async with serving(*apps):
        async with apps[0].app_context():
            token = create_access_token(identity="alice")
            claims = decode_token(token)
        headers = {"Authorization": f"Bearer {token}"}
        for app in apps:
            assert (await app.test_client().get("/protected", headers=headers)).status_code == 200
        await exts[0].revoke(claims)
        first = await apps[0].test_client().get("/protected", headers=headers)
        second = await apps[1].test_client().get("/protected", headers=headers)
        # Revoked on app 0 (its store and channel); app 1 never heard of it.
        assert first.status_code == 401
        assert second.status_code == 200, "app 1 consulted app 0's revocations"


ALLOWLIST = {"track_tokens": True, "mode": "allowlist"}


@pytest.mark.parametrize("wiring", [revsync_first, manager_first, manager_twice_after])
async def test_allowlist_across_two_nodes(
    wiring: Wiring, sqlite_url: str, redis_url: str, channel: str
) -> None:
    settings = {
        "store_url": sqlite_url,
        "redis_url": redis_url,
        "channel": channel,
        "startup_timeout": 10,
        **ALLOWLIST,
    }
    apps = [_app(), _app()]
    exts = [wiring(app, dict(settings)) for app in apps]
    for app, ext in zip(apps, exts, strict=True):
        assert _loader_owner(app) is ext.registry, "allowlist mode must install is_refused"
    async with serving(*apps):
        async with apps[0].test_request_context("/"):
            issued = await exts[0].registry.issue_tokens("alice", refresh=False)
            unregistered = create_access_token(identity="alice")
        for app in apps:
            client = app.test_client()
            good = {"Authorization": f"Bearer {issued.access_token}"}
            bad = {"Authorization": f"Bearer {unregistered}"}
            assert (await client.get("/protected", headers=good)).status_code == 200
            assert (await client.get("/protected", headers=bad)).status_code == 401
