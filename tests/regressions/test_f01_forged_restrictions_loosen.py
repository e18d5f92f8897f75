"""Issue 12, finding 1: a forged *restriction* on the bus can loosen a revocation.

Unrevokes are doorbells (re-read from the store), but revoke and revoke_identity events
are applied as sent.  A message that "restricts" with a weaker value (an older
cut-off, an earlier expiry) and a high seq overwrites the stronger entry:

- ``revoke_identity`` for alice with cut-off 1 (1970): alice's tokens issued before
  the real cut-off are let in again, on every node;
- ``revoke`` of a revoked jti with ``exp = now + 1``: the next in-memory expiry sweep
  drops the entry although the token lives for another hour.

Both without REVSYNC_EVENT_KEY (anyone who can publish on the channel) and with the
key configured and the message signed with it (a stolen key).  A restriction may
only ever tighten what the node holds; the store's word is not weakened by the bus.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis.asyncio as aredis

from revsync import RevSync
from revsync.events import Op, RevocationEvent, encode_event
from tests.engine.conftest import NodeFactory, claims, eventually

from .conftest import settle

KEY = b"k" * 32
FORGED_SEQ = 10**15
FAR_FUTURE = time.time() + 10 * 365 * 24 * 3600


def _processed(node: RevSync) -> int:
    """How many bus events the node has dealt with, however it judged them."""
    c = node.status()["counters"]
    return int(c["applied"]) + int(c["duplicates"]) + sum(c["rejected"].values())


async def _read_from_store(*nodes: RevSync) -> None:
    """Steady state: every node has read the store up to its head (a timer resync), so
    a catch-up triggered by the forged seq re-reads nothing and cannot mask the harm."""
    head = await nodes[0].store.head()
    await eventually(lambda: all(n.status()["store_seq"] >= head for n in nodes), within=5)


async def _publish_and_settle(
    redis_url: str, channel: str, message: bytes, nodes: list[RevSync]
) -> None:
    before = [_processed(n) for n in nodes]
    client = aredis.Redis.from_url(redis_url)
    try:
        receivers = await client.publish(channel, message)
    finally:
        await client.aclose()
    assert receivers >= len(nodes)
    # Counted one way or another (applied, dropped, rejected), then a little slack for
    # the gap catch-up an unknown seq triggers.
    await settle(lambda: all(_processed(n) > b for n, b in zip(nodes, before, strict=True)))
    await settle(lambda: False, within=1.0)


@pytest.mark.parametrize("signed", [False, True], ids=["no_key", "stolen_key"])
async def test_forged_older_cutoff_does_not_let_logged_out_tokens_back_in(
    make_node: NodeFactory, sqlite_url: str, redis_url: str, channel: str, signed: bool
) -> None:
    key = KEY if signed else None
    a = await make_node(sqlite_url, event_key=key, resync_interval=0.3)
    b = await make_node(sqlite_url, event_key=key, resync_interval=0.3)
    old = claims(identity="alice", iat=time.time() - 60)
    await a.revoke_identity("alice")
    assert a.is_revoked(old)
    await eventually(lambda: b.is_revoked(old), within=3)
    await _read_from_store(a, b)

    forged = RevocationEvent(
        op=Op.REVOKE_IDENTITY,
        seq=FORGED_SEQ,
        key="alice",
        expires_at=FAR_FUTURE,
        identity="alice",
        cutoff=1.0,
        origin="mallory",
        sent_at=time.time(),
    )
    await _publish_and_settle(redis_url, channel, encode_event(forged, key), [a, b])

    assert a.is_revoked(old), "node A let a logged-out token back in after a forged cut-off"
    assert b.is_revoked(old), "node B let a logged-out token back in after a forged cut-off"


@pytest.mark.parametrize("signed", [False, True], ids=["no_key", "stolen_key"])
async def test_forged_earlier_expiry_does_not_get_a_revocation_swept_early(
    make_node: NodeFactory, sqlite_url: str, redis_url: str, channel: str, signed: bool
) -> None:
    key = KEY if signed else None
    a = await make_node(sqlite_url, event_key=key, resync_interval=0.3)
    b = await make_node(sqlite_url, event_key=key, resync_interval=0.3)
    token: dict[str, Any] = claims(identity="alice", exp=time.time() + 3600)
    await a.revoke(token)
    await eventually(lambda: b.is_revoked(token), within=3)
    await _read_from_store(a, b)

    now = time.time()
    forged = RevocationEvent(
        op=Op.REVOKE,
        seq=FORGED_SEQ,
        key=str(token["jti"]),
        expires_at=float(int(now + 1)),
        identity="alice",
        cutoff=None,
        origin="mallory",
        sent_at=now,
    )
    await _publish_and_settle(redis_url, channel, encode_event(forged, key), [a, b])

    # The in-memory expiry sweep, as it would run ten seconds from now: the token
    # (exp in an hour) is still alive then and must still be refused.
    for node in (a, b):
        node.revocations.sweep(time.time() + 10)
    assert a.is_revoked(token), "node A dropped a live revocation after a forged expiry"
    assert b.is_revoked(token), "node B dropped a live revocation after a forged expiry"
