"""RevSync's write path: checked before writing, finished even when the caller goes away,
and never an error once durable; tokens that would outlive the cut-offs are not made."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from revsync.changes import Kind
from revsync.config import NEVER_EXPIRES_TTL
from revsync.jwt import JWTManager, create_access_token, create_refresh_token
from tests.conftest import RedisServer
from tests.engine.conftest import NodeFactory, claims, eventually, make_app


@pytest.mark.parametrize("cancel_after", [0, 1, 2, 3, 5, 8, 13, 30])
async def test_a_revoke_whose_caller_is_cancelled_still_finishes_everywhere(
    make_node: NodeFactory, store_url: str, cancel_after: int
) -> None:
    """A client that disconnects mid-logout: Quart cancels the handler.  The revocation
    is committed, applied on this node and announced to the others all the same."""
    a = await make_node(store_url)
    b = await make_node(store_url, resync_interval=600)
    token = claims()
    with capture_logs() as logs:
        task = asyncio.create_task(a.revoke(token))
        for _ in range(cancel_after):
            await asyncio.sleep(0)
        task.cancel()
        outcome: Any = (await asyncio.gather(task, return_exceptions=True))[0]
        # Whatever runs on behind the caller finishes (private: the writes in flight).
        await eventually(lambda: len(a._writes) == 0, within=10)
    row = await a.store.get(Kind.JTI, str(token["jti"]))
    if row is None:
        # Cancelled before the write began: nothing anywhere.
        assert isinstance(outcome, asyncio.CancelledError)
        assert await a.store.head() == 0
        assert not a.is_revoked(token)
    else:
        # Begun: committed, applied here and announced, whatever the caller saw.
        assert row.revoked
        assert a.is_revoked(token)
        await eventually(lambda: b.is_revoked(token), within=5)
        if isinstance(outcome, asyncio.CancelledError):
            events = [e["event"] for e in logs]
            assert "revsync.write_finished_after_cancel" in events
    # The store, the node and the bus all still work for the next write.
    other = claims()
    await a.revoke(other)
    await eventually(lambda: b.is_revoked(other), within=5)


async def test_stop_waits_for_a_write_whose_caller_went_away(
    make_node: NodeFactory, store_url: str
) -> None:
    a = await make_node(store_url)
    token = claims()
    task = asyncio.create_task(a.revoke(token))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await a.stop()
    b = await make_node(store_url)
    assert b.is_revoked(token)


@pytest.mark.parametrize(
    "call", ["revoke_identity", "revoke_jti", "revoke", "revoke_many", "revoke_jti_control"]
)
async def test_a_change_the_bus_could_not_carry_is_refused_before_anything_is_written(
    make_node: NodeFactory, sqlite_url: str, call: str
) -> None:
    node = await make_node(sqlite_url)
    long_identity = "é" * 400  # 400 characters, 800 bytes: fits the key limit, not the event
    exp = time.time() + 3600
    calls = {
        "revoke_identity": lambda: node.revoke_identity(long_identity + "x" * 200),
        "revoke_jti": lambda: node.revoke_jti("j" * 500, exp, identity=long_identity * 2),
        "revoke": lambda: node.revoke(claims(identity=long_identity * 2)),
        "revoke_many": lambda: node.revoke_many([claims(), claims(identity=long_identity * 2)]),
        "revoke_jti_control": lambda: node.revoke_jti("\x01" * 400, exp, identity="\x02" * 300),
    }
    with pytest.raises(ValueError, match="event"):
        await calls[call]()
    assert await node.store.head() == 0
    assert node.stats.published == 0


async def test_a_change_at_the_limits_is_written_and_announced(
    make_node: NodeFactory, sqlite_url: str
) -> None:
    a = await make_node(sqlite_url)
    b = await make_node(sqlite_url, resync_interval=600)
    token = claims(jti="j" * 512, identity="i" * 512)
    await a.revoke(token)
    await eventually(lambda: b.is_revoked(token), within=5)
    assert a.stats.publish_failures == 0


async def test_a_bus_failure_after_the_write_is_never_the_callers_error(
    make_node: NodeFactory, sqlite_url: str, redis_server: RedisServer
) -> None:
    node = await make_node(sqlite_url, redis_url=redis_server.url)
    redis_server.kill()
    token = claims()
    with capture_logs() as logs:
        change = await node.revoke(token)
    assert node.is_revoked(token)
    assert (await node.store.get(Kind.JTI, str(token["jti"]))) == change
    assert node.stats.publish_failures == 1
    assert any(e["event"] == "revsync.publish_failed" for e in logs)


def _manager_app(**config: Any) -> Any:
    lifetimes = {
        "JWT_ACCESS_TOKEN_EXPIRES": timedelta(minutes=15),
        "JWT_REFRESH_TOKEN_EXPIRES": timedelta(days=1),
    }
    app = make_app(**{**lifetimes, **config})
    JWTManager(app)
    return app


async def test_a_token_that_would_outlive_the_cut_offs_is_not_created(
    make_node: NodeFactory, sqlite_url: str
) -> None:
    from revsync import RevSync

    app = _manager_app()
    node = RevSync(app, store_url=sqlite_url)
    assert node.settings.cutoff_ttl == timedelta(days=1).total_seconds()
    async with app.app_context():
        assert isinstance(create_access_token("alice"), str)
        assert isinstance(create_refresh_token("alice"), str)
        assert isinstance(create_access_token("alice", expires_delta=timedelta(days=1)), str)
        with pytest.raises(ValueError, match="REVSYNC_CUTOFF_TTL=86400s"):
            create_access_token("alice", expires_delta=timedelta(days=1, seconds=1))
        with pytest.raises(ValueError, match="never expires"):
            create_refresh_token("alice", expires_delta=False)


async def test_tokens_that_never_expire_are_allowed_when_cut_offs_are_kept_ten_years(
    sqlite_url: str,
) -> None:
    from revsync import RevSync

    app = _manager_app(JWT_REFRESH_TOKEN_EXPIRES=False)
    node = RevSync(app, store_url=sqlite_url)
    assert node.settings.cutoff_ttl == NEVER_EXPIRES_TTL
    async with app.app_context():
        assert isinstance(create_refresh_token("alice"), str)


async def test_a_token_older_than_the_cut_off_retention_is_refused(
    make_node: NodeFactory, sqlite_url: str
) -> None:
    node = await make_node(sqlite_url, cutoff_ttl=3600)
    now = time.time()
    assert not node.is_revoked(claims(iat=now - 3590, exp=now + 600))
    assert node.is_revoked(claims(iat=now - 3610, exp=now + 600))
    assert node.is_revoked({**claims(), "iat": float(now - 3700)})
    assert not node.is_revoked({**claims(), "iat": "not a number"})  # no cut-off to apply
