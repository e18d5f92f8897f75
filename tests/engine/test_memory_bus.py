"""memory://: one process (or several nodes in one process) with no Redis at all.

A product feature: a single-node app, the seed program and an app's own tests run
on the in-process bus.  Multi-node sync across processes is tested on real Redis
elsewhere; these tests never touch a Redis server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from quart import Quart

from revsync import RevSync
from revsync._memory_bus import MemoryBus
from revsync.jwt import JWTManager, create_access_token, decode_token
from tests.engine.conftest import eventually, make_app


class Node(NamedTuple):
    app: Quart
    ext: RevSync


Start = Callable[..., Awaitable[Node]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Start in-process nodes on one SQLite file; every one is stopped at teardown."""
    nodes: list[RevSync] = []

    async def factory(redis_url: str = "memory://", **settings: Any) -> Node:
        settings.setdefault("store_url", f"sqlite:///{tmp_path / 'revsync.db'}")
        settings.setdefault("startup_timeout", 10)
        app = make_app()
        JWTManager(app)
        node = RevSync(app, redis_url=redis_url, **settings)
        nodes.append(node)
        await node.start()
        return Node(app, node)

    yield factory
    for node in nodes:
        await node.stop()


async def fresh_claims(app: Quart, identity: str = "alice") -> dict[str, Any]:
    async with app.app_context():
        claims: dict[str, Any] = decode_token(create_access_token(identity=identity))
        return claims


async def wait_for(check: Callable[[], bool], limit: float) -> float:
    """Seconds until ``check()`` holds; fails the test past ``limit`` seconds."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > limit:
            pytest.fail(f"not within {limit}s")
        await asyncio.sleep(0.001)
    return time.monotonic() - started


async def test_one_process_revokes_and_refuses_at_once(start: Start) -> None:
    app, node = await start()
    assert isinstance(node.bus, MemoryBus)
    assert node.status()["ready"] is True
    claims = await fresh_claims(app)
    assert node.is_revoked(claims) is False
    await node.revoke(claims)
    assert node.is_revoked(claims) is True  # as soon as revoke() returns
    assert node.stats.published == 1
    await node.unrevoke(claims["jti"])
    assert node.is_revoked(claims) is False


async def test_two_nodes_on_a_shared_bus_see_each_others_revocations(start: Start) -> None:
    shared = f"memory://shared-{uuid.uuid4().hex[:8]}"
    # A resync timer far away: what reaches the other node comes over the bus.
    a = await start(shared, resync_interval=600, node_id="a")
    b = await start(shared, resync_interval=600, node_id="b")
    for revoker, other in ((a, b), (b, a)):
        claims = await fresh_claims(revoker.app)
        assert other.ext.is_revoked(claims) is False
        await revoker.ext.revoke(claims)
        took = await wait_for(lambda: other.ext.is_revoked(claims), limit=2)  # noqa: B023
        assert took < 0.5
        assert other.ext.stats.applied == 1


async def test_private_buses_do_not_cross(start: Start) -> None:
    # Two nodes on memory:// (no name) and one store: only the store's catch-up links them.
    a = await start(resync_interval=600)
    b = await start(resync_interval=600)
    claims = await fresh_claims(a.app)
    await a.ext.revoke(claims)
    await asyncio.sleep(0.3)
    assert b.ext.is_revoked(claims) is False
    assert b.ext.stats.applied == 0


async def test_heartbeats_make_the_node_ready_and_keep_it_in_sync(start: Start) -> None:
    _, node = await start(heartbeat_interval=0.05)
    # start() returned: the snapshot is taken and the node's own ping came back.
    assert node.subscriber.synced.is_set()
    assert node.subscriber.last_heartbeat is not None
    seen = node.stats.heartbeats
    assert seen >= 1
    # Round trips keep coming (every 0.05 s; bounded generously for a loaded machine).
    await eventually(lambda: node.stats.heartbeats >= seen + 5, within=5)
    assert node.status()["connection"] == {"bus": "connected", "last_error": None}


async def test_staleness_applies_and_lifts_on_the_memory_bus(start: Start) -> None:
    app, node = await start(heartbeat_interval=0.05, resync_interval=0.2, max_staleness=0.5)
    claims = await fresh_claims(app)
    assert node.is_revoked(claims) is False
    # A loop blocked past the maximum staleness: nothing confirms sync meanwhile.
    time.sleep(0.8)  # noqa: ASYNC251 - the block is the point
    assert node.is_revoked(claims) is True  # fail closed while stale
    # Heartbeats and a catch-up confirm sync again, and the token is accepted again.
    await wait_for(lambda: not node.is_revoked(claims), limit=3)
    assert node.status()["stale"] is False


async def test_the_in_process_bus_is_logged_at_start_up(start: Start) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        await start()
    lines = [entry for entry in logs if entry["event"] == "revsync.bus_in_process"]
    assert len(lines) == 1
    assert lines[0]["log_level"] == "info"
    assert "this process only" in lines[0]["reach"]


async def test_without_redis_the_start_up_error_points_to_memory(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    # The default bus is Redis; here nothing answers at its address.
    app = make_app()
    node = RevSync(
        app,
        redis_url="redis://127.0.0.1:1/0",
        store_url=f"sqlite:///{tmp_path / 'r.db'}",
        startup_timeout=1,
    )
    with capture_logs() as logs, pytest.raises(RuntimeError) as failed:
        await node.start()
    assert "REVSYNC_REDIS_URL=memory://" in str(failed.value)
    hints = [entry for entry in logs if entry["event"] == "revsync.bus_unreachable"]
    assert len(hints) == 1  # once, at the first failure, not at every retry
    assert "memory://" in hints[0]["hint"]
