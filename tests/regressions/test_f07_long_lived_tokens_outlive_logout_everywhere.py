"""Issue 12, finding 7: tokens that live longer than the identity cut-off's retention
outlive "log out everywhere".

``revoke_identity`` keeps its cut-off row for REVSYNC_CUTOFF_TTL, which defaults to
the longest of JWT_ACCESS_TOKEN_EXPIRES and JWT_REFRESH_TOKEN_EXPIRES (here 15 min
and 1 day: 1 day).  A token created with a longer ``expires_delta`` (30 days) is
still valid when the cut-off row has expired and been pruned, everywhere: from then
on nothing says it was logged out, and it is accepted.

- A node cannot know that no expired cut-off applied to a token issued longer ago
  than the retention that is still valid: it must refuse it.  Here bob got a 30-day
  token two days ago and logged out everywhere a second later; that cut-off was kept
  one day, so it has expired and is pruned, and bob's token is presented now.
- ``create_access_token(..., expires_delta=timedelta(days=30))`` with RevSync
  attached and a 1-day retention must not silently mint such a token: the planned
  fix raises ValueError naming REVSYNC_CUTOFF_TTL.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from quart import Quart

from revsync.changes import ChangeRequest, Kind
from revsync.jwt import JWTManager, create_access_token
from tests.engine.conftest import claims, eventually, make_app

from .conftest import AppNodeFactory

DAY = 24 * 3600.0


def _app() -> Quart:
    app = make_app(
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=15),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=1),
    )
    JWTManager(app)
    return app


async def test_token_older_than_the_cutoff_retention_is_refused_after_the_cutoff_is_gone(
    make_app_node: AppNodeFactory, sqlite_url: str
) -> None:
    node = await make_app_node(_app(), store_url=sqlite_url, resync_interval=0.3)
    assert node.settings.cutoff_ttl < 2 * DAY  # the default: the refresh token's lifetime

    now = time.time()
    fresh = claims(identity="alice", iat=now - 10, exp=now + 30 * DAY)
    await node.revoke_identity("alice")
    assert node.is_revoked(fresh)  # while the cut-off is kept: refused
    await node.unrevoke_identity("alice")

    # Two days ago: bob got a 30-day token, then logged out everywhere a second
    # later.  That cut-off was kept one day; it has expired and is pruned.
    issued = now - 2 * DAY
    cutoff = issued + 1
    old = claims(identity="bob", iat=issued, exp=issued + 30 * DAY)
    written = await node.store.write(
        ChangeRequest(Kind.IDENTITY, "bob", True, cutoff + DAY, "bob", cutoff=cutoff)
    )
    # The node reads that row (and keeps nothing of it: expired), then it is pruned.
    await eventually(lambda: node.status()["store_seq"] >= written.seq, within=5)
    assert await node.store.prune(time.time()) >= 1
    assert await node.store.get(Kind.IDENTITY, "bob") is None

    assert node.is_revoked(old), (
        "a 30-day token issued 2 days ago is accepted, though any cut-off that applied "
        "to it (kept 1 day) is gone"
    )
    # Tokens within the retention are judged as usual.
    recent = claims(identity="bob", iat=now - 10, exp=now + 15 * 60)
    assert not node.is_revoked(recent)


async def test_create_access_token_longer_than_the_cutoff_retention_is_refused(
    make_app_node: AppNodeFactory, sqlite_url: str
) -> None:
    app = _app()
    node = await make_app_node(app, store_url=sqlite_url)
    assert node.settings.cutoff_ttl < 30 * DAY  # the default: the refresh token's lifetime
    async with app.app_context():
        with pytest.raises(ValueError, match="REVSYNC_CUTOFF_TTL"):
            create_access_token(identity="alice", expires_delta=timedelta(days=30))
