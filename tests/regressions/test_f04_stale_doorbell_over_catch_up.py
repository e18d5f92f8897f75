"""Issue 12, finding 4: a stale doorbell read is applied over a newer catch-up
(REVSYNC_MODE=allowlist, REVSYNC_TRACK_TOKENS=true; see docs/registry.md).

The subscriber handles a doorbell (unrevoke, issue) by reading that target's row
from the store *outside* the replica lock, then applying it.  In allowlist mode a
request presenting a token this node has not registered yet (``rsq`` beyond what it
applied) waits and starts a background catch-up (``Registry._wait_for``), which runs
beside the subscriber.  If that catch-up applies a newer row for the doorbell's
target between the doorbell's read and its apply, the older row wins:

1. token J issued (registered), then revoked (store: J revoked);
2. J unrevoked: node N's subscriber reads J's row (unrevoked) for the doorbell, and
   the read returns late (a delegating wrapper around N's real store holds the
   return of that ``get`` on a gate);
3. J revoked again; its event waits in N's queue behind the held doorbell;
4. another user logs in; a request on N with that new token waits for its ``rsq``
   and starts a catch-up, which applies J's newest row (revoked);
5. the held read returns: N applies "J unrevoked" over "J revoked", and the queued
   revoke event is then dropped as already applied (its seq is behind the catch-up).

N must refuse J.  Allowlist mode is needed: it is the only thing that catches up
outside the subscriber's own task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from inspect import isawaitable
from typing import Any

import jwt
from quart import Quart

from revsync import RevSync
from revsync.jwt import JWTManager
from tests.engine.conftest import eventually, make_app

from .conftest import AppNodeFactory, GatedStore, settle

ALLOWLIST: dict[str, Any] = {"track_tokens": True, "mode": "allowlist", "resync_interval": 600}


def _app() -> Quart:
    app = make_app(
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=15),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=1),
    )
    JWTManager(app)
    return app


async def _issue(app: Quart, node: RevSync, identity: str) -> dict[str, Any]:
    async with app.app_context():
        issued = await node.registry.issue_tokens(identity, refresh=False)
    claims: dict[str, Any] = jwt.decode(issued.access_token, options={"verify_signature": False})
    return claims


async def _refused(node: RevSync, claims: dict[str, Any]) -> bool:
    """What the denylist loader answers for these claims on ``node`` (allowlist mode)."""
    assert node.registry is not None
    answer: bool | Awaitable[bool] = node.registry.is_refused(claims)
    if isawaitable(answer):
        async with asyncio.timeout(10):
            return await answer
    return answer


async def test_stale_doorbell_read_is_not_applied_over_a_newer_catch_up(
    make_app_node: AppNodeFactory, sqlite_url: str
) -> None:
    app_a = _app()
    a = await make_app_node(app_a, store_url=sqlite_url, **ALLOWLIST)
    gated = GatedStore.from_url(sqlite_url)
    n = await make_app_node(_app(), store=gated, **ALLOWLIST, allowlist_wait=8)

    token = await _issue(app_a, a, "alice")
    jti, exp = str(token["jti"]), float(token["exp"])
    await eventually(lambda: n.status()["last_applied_seq"] >= token["rsq"], within=5)
    assert not await _refused(n, token)
    revoked = await a.revoke_jti(jti, exp)
    await eventually(lambda: n.status()["last_applied_seq"] >= revoked.seq, within=5)
    assert await _refused(n, token)

    hold = gated.hold("get", key=jti)  # N's doorbell read of J returns late
    try:
        unrevoked = await a.unrevoke(jti)
        await hold.reached()
        again = await a.revoke_jti(jti, exp)  # the store's final word on J: revoked
        assert again.seq > unrevoked.seq
        # A login on A; its token is presented to N before N has heard of it: N waits
        # for the registration and catches up from the store meanwhile.
        other = await _issue(app_a, a, "bob")
        waiting = asyncio.create_task(_refused(n, other))
        # Today the catch-up runs at once and reads J's newest row.  (A fix that reads
        # the doorbell's row under the replica lock makes it wait for the release
        # instead: hence a bounded wait that does not fail, and a long allowlist wait.)
        await settle(lambda: n.status()["store_seq"] >= again.seq, within=2)
    finally:
        hold.release()
    async with asyncio.timeout(10):
        assert not await waiting  # bob's new token is let in once N has caught up
    # Let N apply the held doorbell and whatever waited behind it.
    await eventually(lambda: n.status()["last_applied_seq"] >= other["rsq"], within=5)
    await asyncio.sleep(0.5)

    row = await a.store.get(revoked.kind, jti)
    assert row is not None
    assert row.revoked
    assert await _refused(a, token)
    assert await _refused(n, token), "N applied a stale doorbell read over a newer catch-up"
    await asyncio.sleep(1.0)
    assert await _refused(n, token), "N still lets the revoked token in"
