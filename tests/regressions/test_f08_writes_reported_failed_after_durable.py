"""Issue 12, finding 8: writes reported as failed after they were made durable.

Bus events allow identities (and keys) of at most 512 characters.  An identity of
600 characters passes every check before the store write, the store commits the
change, and only then building the bus event raises ValueError: the caller is told
the write failed, but it is durable (and applied on this node, never announced to
the others).  An input the bus cannot carry must be refused *before* anything is
written: ValueError, store head unchanged, nothing stored for that identity.

The same through ``issue_tokens`` with REVSYNC_TRACK_TOKENS on (the registration is
written, then the ``issue`` event cannot be built).

(A bus failure after a durable write must not raise: already covered by
tests/engine/test_invariants.py::test_redis_restart_is_caught_up_from_the_store.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from revsync import RevSync
from revsync.jwt import JWTManager
from tests.engine.conftest import NodeFactory, claims, make_app

from .conftest import AppNodeFactory

LONG = "a" * 600  # events carry at most 512 characters

Write = Callable[[RevSync], Awaitable[Any]]
WRITES: dict[str, Write] = {
    "revoke_identity": lambda node: node.revoke_identity(LONG),
    "revoke_jti": lambda node: node.revoke_jti(
        str(uuid.uuid4()), time.time() + 3600, identity=LONG
    ),
    "revoke": lambda node: node.revoke(claims(identity=LONG)),
}


@pytest.mark.parametrize("write", list(WRITES))
async def test_identity_too_long_for_the_bus_is_refused_before_the_store_write(
    make_node: NodeFactory, store_url: str, write: str
) -> None:
    node = await make_node(store_url)
    head = await node.store.head()
    with pytest.raises(ValueError):  # noqa: PT011 - which ValueError is the fix's choice
        await WRITES[write](node)
    rows = await node.store.by_identity(LONG)
    assert not rows, f"the refused write is in the store: {[(r.kind, r.seq) for r in rows]}"
    assert await node.store.head() == head, "the refused write took a seq"
    assert node.status()["entries"] == {"jti": 0, "identity": 0}, "applied on this node"


async def test_issue_tokens_for_an_identity_too_long_for_the_bus_writes_nothing(
    make_app_node: AppNodeFactory, store_url: str
) -> None:
    app = make_app(
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=15),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=1),
    )
    JWTManager(app)
    node = await make_app_node(app, store_url=store_url, track_tokens=True)
    head = await node.store.head()
    async with app.test_request_context("/login", method="POST"):
        with pytest.raises(ValueError):  # noqa: PT011
            await node.registry.issue_tokens(LONG, metadata={"device": "laptop"})
    records = await node.registry.active_tokens(LONG)
    assert not records, f"the refused tokens are registered: {[r.type for r in records]}"
    rows = await node.store.by_identity(LONG)
    assert not rows, f"the refused registration is in the store: {[r.seq for r in rows]}"
    assert await node.store.head() == head, "the refused registration took a seq"
