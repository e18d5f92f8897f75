"""Attack 5 (a client that disconnects mid-request): refresh-token reuse detection
cancelled half-way marks the family revoked in the store but leaves its live tokens
accepted on every node.

Guarantee 1 (docs/design.md) and revsync/_shielded.py: a write whose caller is
cancelled (Quart cancels the handler of a client that disconnects) runs to completion
anyway: committed, applied and announced, or nothing.  revsync/registry.py: "Presenting
a rotated token again revokes the whole family on every node".

Scenario: alice logs in (A0, R0).  A thief who copied R0 refreshes first
and holds the family's live tokens A1 and R1.  Then alice's client presents R0 again:
``Registry.refresh`` finds it rotated and handles the reuse --
``Registry.revoke_family`` marks the family in the store, then revokes its members
with ``revoke_many``.  Alice's client disconnects during that request, while it awaits
the store's answer to the family mark (made deterministic by handing that answer back
late: a delegating wrapper holds it after the real store call committed).  Without
any injected delay, cancelling the request after k event-loop iterations hit the same
window at k = 18-27 on SQLite, 57-117 on PostgreSQL and about 26 on Redis (a narrow
window there, so not swept here).

``Registry.refresh``/``revoke_family`` are two writes and only each write is
shielded: a cancellation that lands while the family mark is being written lets the
mark commit (the SQLite transaction, the PostgreSQL statement, the Redis script run
to the end) but stops the caller before ``revoke_many``.  The store then refuses every
rotation in the family (the "reuse" has been recorded), yet A1 and R1 are revoked
nowhere: the thief's access token is accepted by every node until it expires (15 min
by default) and nothing ever revokes it unless someone presents R1 again (and that
request can be cut the same way).

Root cause: revsync/registry.py ``Registry.refresh`` -> ``Registry.revoke_family`` (the
mark and the member revocations are not one shielded unit of work; only
``RevSync._write`` / ``shielded`` are shielded).  Failed on every store before the fix; kept as a
regression test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from quart import Quart

from revsync import RevSync
from revsync.jwt import JWTManager
from tests.engine.conftest import make_app
from tests.regressions.conftest import GatedStore

SECRET = "x" * 32  # make_app's JWT_SECRET_KEY


class LateFamilyMark(GatedStore):
    """The real store; ``hold("revoke_family")`` delays the answer of the family mark."""

    async def revoke_family(self, family: str) -> Any:
        return await self._call("revoke_family", family, lambda: self.real.revoke_family(family))


@pytest.fixture
async def rotating_node(
    store_url: str, redis_url: str, channel: str
) -> AsyncIterator[tuple[Quart, RevSync]]:
    app = make_app()
    JWTManager(app)
    node = RevSync(
        app,
        store=LateFamilyMark.from_url(store_url),
        redis_url=redis_url,
        channel=channel,
        startup_timeout=10,
        track_tokens=True,
        rotate_refresh=True,
    )
    await node.start()
    try:
        yield app, node
    finally:
        await node.stop()


def decoded(token: str | None) -> dict[str, Any]:
    assert token is not None
    claims: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"])
    return claims


async def test_a_cancelled_reuse_never_leaves_the_thiefs_tokens_alive(
    rotating_node: tuple[Quart, RevSync],
) -> None:
    app, node = rotating_node
    gated = node.store
    assert isinstance(gated, LateFamilyMark)
    async with app.app_context():
        login = await node.registry.issue_tokens("alice")
        r0 = decoded(login.refresh_token)
        stolen = await node.registry.refresh(r0)  # the thief rotates first
        a1, r1 = decoded(stolen.access_token), decoded(stolen.refresh_token)

        hold = gated.hold("revoke_family")  # its answer comes back late
        reuse = asyncio.ensure_future(node.registry.refresh(r0))  # alice, again
        await hold.reached()  # the family mark has committed
        reuse.cancel()  # alice's client goes away
        hold.release()
        outcome = (await asyncio.gather(reuse, return_exceptions=True))[0]
        await node._writes.drain()  # anything still running behind the caller
        await asyncio.sleep(0.2)

        alive = not node.is_revoked(a1)
        # The reuse is recorded: the store refuses every rotation in the family.
        assert await gated.real.register([], rotate=str(r1["jti"])) is None
    assert isinstance(outcome, asyncio.CancelledError)
    assert not alive, (
        "reuse detection cancelled after the family mark: the store refuses rotations "
        "of the family (reuse recorded), yet the thief's access token of that family "
        "is accepted by the node (nothing revoked it)"
    )
