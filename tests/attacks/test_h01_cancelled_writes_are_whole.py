"""Holds (probe): every RevSync write cancelled at every event-loop iteration is whole.

Guarantee 1 (docs/design.md) for the writes the existing suite does not sweep:
``revoke_many`` (150 tokens: past ``PUBLISH_EACH_LIMIT``, so only the last change is
announced and the other node catches up on the gap), ``revoke_identity``, ``unrevoke``
(which reads the store before writing) and ``issue_tokens`` (registry, allowlist
mode).  Each is started as a task and cancelled after k loop iterations (k = 0, 1,
2 ... 59, then every 20th) until a run finishes before the cancel.  After each:
either nothing was written (the store's head did not move and the writing node's
decision is unchanged), or the change is durable, applied on the writing node and
reached the other node (timer off: only by the bus or a gap catch-up); and the
store still takes a write that reaches the other node.  On every store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from quart import Quart

from revsync import RevSync
from revsync.changes import Kind
from revsync.jwt import JWTManager
from tests.engine.conftest import claims, eventually, make_app
from tests.regressions.conftest import AppNodeFactory

POINTS = [*range(60), *range(60, 5000, 20)]
"""Every iteration first, then every 20th: a 150-row write takes many iterations."""


async def sweep(
    start: Callable[[int], Awaitable[Any]],
    check: Callable[[int, int], Awaitable[None]],
    a: RevSync,
    b: RevSync,
    prepare: Callable[[int], Awaitable[None]] | None = None,
) -> int:
    for k in POINTS:
        if prepare is not None:
            await prepare(k)
        head = await a.store.head()
        task = asyncio.ensure_future(start(k))
        for _ in range(k):
            await asyncio.sleep(0)
        finished = task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await a._writes.drain()  # a write that goes on behind its cancelled caller
        await asyncio.sleep(0.02)
        await check(k, head)
        after = claims()
        await a.revoke(after)
        await eventually(lambda t=after: b.is_revoked(t), within=5)
        if finished:
            return k
    pytest.fail("never finished")


@pytest.fixture
async def nodes(make_app_node: AppNodeFactory, store_url: str) -> tuple[Quart, RevSync, RevSync]:
    apps = [make_app(), make_app()]
    for app in apps:
        JWTManager(app)
    settings: dict[str, Any] = {
        "store_url": store_url,
        "resync_interval": 600,
        "track_tokens": True,
        "mode": "allowlist",
    }
    a = await make_app_node(apps[0], **settings)
    b = await make_app_node(apps[1], **settings)
    return apps[0], a, b


async def test_cancelled_revoke_many_is_whole(nodes: tuple[Quart, RevSync, RevSync]) -> None:
    _, a, b = nodes
    batches: dict[int, list[dict[str, Any]]] = {}

    def start(k: int) -> Awaitable[Any]:
        batches[k] = [claims() for _ in range(150)]
        return a.revoke_many(batches[k])

    async def check(k: int, head: int) -> None:
        rows = [await a.store.get(Kind.JTI, str(t["jti"])) for t in batches[k]]
        if all(row is None for row in rows):
            assert await a.store.head() == head
            assert not any(a.is_revoked(t) for t in batches[k])
            return
        assert all(row is not None and row.revoked for row in rows), k
        assert all(a.is_revoked(t) for t in batches[k]), k
        await eventually(lambda: all(b.is_revoked(t) for t in batches[k]), within=5)

    assert await sweep(start, check, a, b) > 1


async def test_cancelled_revoke_identity_is_whole(nodes: tuple[Quart, RevSync, RevSync]) -> None:
    _, a, b = nodes

    def start(k: int) -> Awaitable[Any]:
        return a.revoke_identity(f"user-{k}")

    async def check(k: int, head: int) -> None:
        token = claims(identity=f"user-{k}", iat=time.time() - 5)
        row = await a.store.get(Kind.IDENTITY, f"user-{k}")
        if row is None:
            assert await a.store.head() == head
            assert not a.is_revoked(token)
            return
        assert row.revoked
        assert a.is_revoked(token)
        await eventually(lambda: b.is_revoked(token), within=5)

    assert await sweep(start, check, a, b) > 1


async def test_cancelled_unrevoke_is_whole(nodes: tuple[Quart, RevSync, RevSync]) -> None:
    _, a, b = nodes
    tokens: dict[int, dict[str, Any]] = {}

    def start(k: int) -> Awaitable[Any]:
        return a.unrevoke(str(tokens[k]["jti"]))

    async def prepare(k: int) -> None:
        tokens[k] = claims()
        await a.revoke(tokens[k])
        await eventually(lambda: b.is_revoked(tokens[k]), within=5)

    async def check(k: int, head: int) -> None:
        row = await a.store.get(Kind.JTI, str(tokens[k]["jti"]))
        assert row is not None
        if row.revoked:
            assert a.is_revoked(tokens[k])
            assert b.is_revoked(tokens[k])
            return
        assert not a.is_revoked(tokens[k])
        await eventually(lambda: not b.is_revoked(tokens[k]), within=5)

    assert await sweep(start, check, a, b, prepare) > 1


async def test_cancelled_issue_tokens_is_whole(nodes: tuple[Quart, RevSync, RevSync]) -> None:
    app, a, b = nodes

    async def start(k: int) -> Any:
        async with app.app_context():
            return await a.registry.issue_tokens(f"user-{k}")

    async def check(k: int, head: int) -> None:
        rows = [r for r in await a.store.since(head) if r.kind is Kind.ISSUED]
        assert len(rows) in (0, 2), rows
        for row in rows:
            assert a.revocations.is_allowed(row.key)
            await eventually(lambda r=row: b.revocations.is_allowed(r.key), within=5)

    assert await sweep(start, check, a, b) > 1
