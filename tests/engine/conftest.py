"""In-process nodes over real connections: each node is a Quart app with its own
RevSync, its own store connection and its own Redis subscription."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
from quart import Quart

from revsync import RevSync

NodeFactory = Callable[..., Awaitable[RevSync]]


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def store_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh store of each kind, shared by every node of a test."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_url")
    elif request.param == "postgres":
        yield request.getfixturevalue("postgres_schema_url")
    else:
        base = request.getfixturevalue("redis_url")
        prefix = f"rt-{uuid.uuid4().hex[:10]}"
        yield f"{base}?prefix={prefix}"
        client = redis.Redis.from_url(base)
        keys = list(client.scan_iter(match=f"*{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def sqlite_store_url(sqlite_url: str) -> str:
    return sqlite_url


def make_app(**config: Any) -> Quart:
    app = Quart(__name__)
    app.config.update(
        JWT_SECRET_KEY="x" * 32,
        JWT_BLACKLIST_ENABLED=True,
        **config,
    )
    return app


@pytest.fixture
async def make_node(redis_url: str, channel: str) -> AsyncIterator[NodeFactory]:
    """Start nodes on demand; every node started is stopped at teardown."""
    nodes: list[RevSync] = []

    async def factory(store_url: str, *, start: bool = True, **settings: Any) -> RevSync:
        settings.setdefault("redis_url", redis_url)
        settings.setdefault("channel", channel)
        settings.setdefault("startup_timeout", 10)
        node = RevSync(make_app(), store_url=store_url, **settings)
        nodes.append(node)
        if start:
            await node.start()
        return node

    yield factory
    for node in nodes:
        await node.stop()


def claims(
    jti: str | None = None,
    identity: str = "alice",
    iat: float | None = None,
    exp: float | None = None,
) -> dict[str, Any]:
    now = time.time()
    return {
        "jti": jti or str(uuid.uuid4()),
        "identity": identity,
        "iat": int(now if iat is None else iat),
        "exp": int(now + 3600 if exp is None else exp),
        "type": "access",
    }


async def eventually(check: Callable[[], bool], within: float = 5.0) -> float:
    """Poll ``check`` until it holds; return the seconds it took; fail after ``timeout``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > within:
            pytest.fail(f"condition not met within {within}s")
        await asyncio.sleep(0.002)
    return time.monotonic() - started


def logout_app(**settings: Any) -> tuple[Quart, RevSync]:
    """An app with the JWT layer, RevSync (``settings``; ``config=`` for app.config),
    GET /protected and DELETE /logout, as the seed program has them."""
    from quart import jsonify

    from revsync.jwt import JWTManager, get_raw_jwt, jwt_required

    app = make_app(**settings.pop("config", {}))
    JWTManager(app)
    revsync = RevSync(app, **settings)

    @app.route("/protected")
    @jwt_required
    async def protected() -> Any:
        return jsonify(hello="world")

    @app.route("/logout", methods=["DELETE"])
    @jwt_required
    async def logout() -> Any:
        await revsync.revoke(get_raw_jwt())
        return jsonify(msg="Successfully logged out")

    return app, revsync
