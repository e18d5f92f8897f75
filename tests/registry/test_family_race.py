"""Reuse detection against a concurrent rotation (issue 12, finding 6).

A rotated refresh token comes back (a stolen copy) while the legitimate client
rotates the family's current token.  However the two interleave, no token may come
out of the rotation alive: either the rotation fails (RefreshTokenReused) or every
token it registered ends up revoked.  Reading the family's members once and revoking
them used to miss a successor committed just after that read.

One process, one node, real stores and no delay inside any store: each trial starts
the rotation a few event-loop iterations later than the last, so the trials sweep
the rotation's commit across the reuse handling (and past its end).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from quart import Quart

from revsync import RevSync
from revsync.changes import Kind
from revsync.jwt import JWTManager
from revsync.registry import IssuedTokens, RefreshTokenReused
from tests.engine.conftest import make_app

TRIALS = 20
OFFSET = 2
"""Loop iterations more, trial after trial, before the rotation starts."""
SECRET = "x" * 32  # make_app's JWT_SECRET_KEY


@pytest.fixture
async def rotating_node(
    store_url: str, redis_url: str, channel: str
) -> AsyncIterator[tuple[Quart, RevSync]]:
    app = make_app()
    JWTManager(app)
    node = RevSync(
        app,
        store_url=store_url,
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


def claims(token: str | None) -> dict[str, Any]:
    assert token is not None
    decoded: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"])
    return decoded


async def rotate_later(
    node: RevSync, current: dict[str, Any], iterations: int
) -> IssuedTokens | None:
    """Refresh with ``current`` once the event loop ran ``iterations`` times (no clock
    involved), unless the JWT layer would refuse it by then (None)."""
    for _ in range(iterations):
        await asyncio.sleep(0)
    if node.is_revoked(current):
        return None
    return await node.registry.refresh(current)


async def test_reuse_during_a_rotation_leaves_no_live_successor(
    rotating_node: tuple[Quart, RevSync],
) -> None:
    app, node = rotating_node
    escaped: list[str] = []
    outcomes: Counter[str] = Counter()
    async with app.app_context():
        for trial in range(TRIALS):
            login = await node.registry.issue_tokens("alice")
            old = claims(login.refresh_token)
            current = claims((await node.registry.refresh(old)).refresh_token)
            # The stolen old token comes back while the client rotates its current one,
            # the rotation starting a few more loop iterations later in each trial.
            reuse, rotation = await asyncio.gather(
                node.registry.refresh(old),
                rotate_later(node, current, OFFSET * trial),
                return_exceptions=True,
            )
            assert isinstance(reuse, RefreshTokenReused), reuse
            outcomes[type(rotation).__name__] += 1
            if rotation is None or isinstance(rotation, RefreshTokenReused):
                continue
            assert isinstance(rotation, IssuedTokens), rotation
            assert rotation.refresh is not None
            for record in (rotation.access, rotation.refresh):
                row = await node.store.get(Kind.JTI, record.jti)
                if row is None or not row.revoked:
                    escaped.append(f"trial {trial}: {record.type} {record.jti} is live")
            # What the reuse revoked from the start stays revoked.
            for jti in (login.access.jti, current["jti"]):
                row = await node.store.get(Kind.JTI, jti)
                assert row is not None
                assert row.revoked
    trials = {entry.partition(":")[0] for entry in escaped}
    assert not escaped, f"{len(trials)} of {TRIALS} trials ({dict(outcomes)}): {escaped}"
