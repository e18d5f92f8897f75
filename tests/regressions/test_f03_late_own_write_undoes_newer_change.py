"""Issue 12, finding 3: a node's own write that returns late undoes a newer change.

Nodes A and B share one store.  A token is revoked.  B unrevokes it; the store commits
B's unrevoke (seq n) but the call returns late (a slow network, a busy event loop:
here a delegating wrapper around B's real store holds the return on a gate).
Meanwhile A revokes the token again (seq n+1) and B applies that, from the bus and
the catch-up its gap triggers.  When B's write finally returns, B applies its own,
older change over the newer one: B lets the token in although the store's final word
is "revoked", and nothing ever repairs it (the old event is a duplicate by seq, the
catch-up cursor is already past it).

The same for identities: a late ``unrevoke_identity`` against a newer ``revoke_identity``.
"""

from __future__ import annotations

import asyncio
import time

from revsync import RevSync
from revsync.changes import Kind
from tests.engine.conftest import NodeFactory, claims, eventually

from .conftest import GatedStore


async def _applied(node: RevSync, seq: int) -> None:
    await eventually(lambda: node.status()["last_applied_seq"] >= seq, within=5)


async def test_late_unrevoke_does_not_undo_a_newer_revoke(
    make_node: NodeFactory, store_url: str
) -> None:
    a = await make_node(store_url, resync_interval=600)
    gated = GatedStore.from_url(store_url)
    b = await make_node(store_url, store=gated, resync_interval=600)
    token = claims()
    jti = str(token["jti"])
    first = await a.revoke(token)
    await _applied(b, first.seq)
    assert b.is_revoked(token)

    hold = gated.hold("write", key=jti)  # B's unrevoke commits, then its return waits
    unrevoking = asyncio.create_task(b.unrevoke(jti))
    try:
        await hold.reached()
        row = await a.store.get(Kind.JTI, jti)
        assert row is not None
        assert not row.revoked  # B's unrevoke is durable
        again = await a.revoke(token)
        assert again.seq > row.seq
        await _applied(b, again.seq)
        assert b.is_revoked(token)
    finally:
        hold.release()
    async with asyncio.timeout(5):
        late = await unrevoking
    assert late.seq < again.seq

    final = await a.store.get(Kind.JTI, jti)
    assert final is not None
    assert final.revoked, "the store's final word is: revoked"
    assert a.is_revoked(token)
    assert b.is_revoked(token), "B applied its own older unrevoke over A's newer revoke"
    await asyncio.sleep(1.5)
    assert b.is_revoked(token), "B let the token in a while after its late write returned"


async def test_late_unrevoke_identity_does_not_undo_a_newer_revoke_identity(
    make_node: NodeFactory, store_url: str
) -> None:
    a = await make_node(store_url, resync_interval=600)
    gated = GatedStore.from_url(store_url)
    b = await make_node(store_url, store=gated, resync_interval=600)
    old = claims(identity="alice", iat=time.time() - 60)
    first = await a.revoke_identity("alice")
    await _applied(b, first.seq)
    assert b.is_revoked(old)

    hold = gated.hold("write", key="alice")
    unrevoking = asyncio.create_task(b.unrevoke_identity("alice"))
    try:
        await hold.reached()
        row = await a.store.get(Kind.IDENTITY, "alice")
        assert row is not None
        assert not row.revoked
        again = await a.revoke_identity("alice")
        assert again.seq > row.seq
        await _applied(b, again.seq)
        assert b.is_revoked(old)
    finally:
        hold.release()
    async with asyncio.timeout(5):
        late = await unrevoking
    assert late.seq < again.seq

    final = await a.store.get(Kind.IDENTITY, "alice")
    assert final is not None
    assert final.revoked, "the store's final word is: alice logged out"
    assert a.is_revoked(old)
    assert b.is_revoked(old), "B applied its own older unrevoke_identity over A's newer cut-off"
    await asyncio.sleep(1.5)
    assert b.is_revoked(old), "B let the token in a while after its late write returned"
