"""Attack 2 (bus, no key or a stolen key): forged restrictions that are shed still
leave their keys in the expiry index, so a node's memory grows without bound.

Guarantee 8 (docs/design.md): "memory and store size are bounded by the number of
live revocations"; "Overlays are bounded by what arrives between two catch-ups".

Scenario: an attacker publishes forged ``revoke`` and ``revoke_identity`` messages, each
for a fresh random jti / identity, with a far-future expiry (each in its own 30 s
expiry bucket) and a seq just past the node's cursor (so they are merged as overlays
without a catch-up each).  The node's catch-ups then shed every one of them: the set
holds no revoked jti, no cut-off and no overlay afterwards.  But
``RevocationSet.restrict`` filed each key in an expiry bucket
(``_ExpiryIndex.set``), and shedding (``RevocationSet.apply`` of the tombstone beneath)
only pops the key from the expiry dict: the bucket list keeps the key string, and the
bucket id stays in the heap, until that bucket comes due in ``prune`` -- years away
(or never: ``exp`` may be up to 1e15).  Every forged message therefore leaks one key
(up to 512 characters) plus a bucket; a second flood leaks as much again.

Root cause: revsync/_revocation_set.py ``RevocationSet._apply`` / ``_ExpiryIndex`` (removal
does not unfile the key; only ``prune`` of a due bucket does), reached from
revsync/_replica.py ``Replica._shed``.  Not a token acceptance, but an unbounded-memory
DoS from the channel.  Failed before the fix; kept as a regression test.
"""

from __future__ import annotations

import time
import uuid

import redis.asyncio as aredis

from revsync._revocation_set import COMPACT_AFTER, RevocationSet
from revsync.events import Op, RevocationEvent, encode_event
from tests.engine.conftest import NodeFactory, eventually

FORGED = 6_000
RESYNC = 0.3


def filed_keys(revocations: RevocationSet) -> int:
    """Key strings held by the expiry buckets of revoked jtis and cut-offs."""
    return sum(
        len(keys)
        for index in (revocations._jti_index, revocations._identity_index)
        for keys in index.buckets.values()
    )


def heap_size(revocations: RevocationSet) -> int:
    return len(revocations._jti_index.heap) + len(revocations._identity_index.heap)


async def flood(client: aredis.Redis, channel: str, seq: int) -> None:
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for n in range(FORGED):
        key = uuid.uuid4().hex * 8  # 256 characters
        exp = now + 30 * 86400 + 30 * n  # each in a bucket of its own
        if n % 2:
            event = RevocationEvent(Op.REVOKE_IDENTITY, seq, key, exp, key, now, "mallory", now)
        else:
            event = RevocationEvent(Op.REVOKE, seq, key, exp, None, None, "mallory", now)
        pipe.publish(channel, encode_event(event, None))
    await pipe.execute()


async def test_shed_forgeries_leave_nothing_behind(
    make_node: NodeFactory, sqlite_url: str, redis_url: str, channel: str
) -> None:
    node = await make_node(sqlite_url, resync_interval=RESYNC)
    client = aredis.Redis.from_url(redis_url)
    try:
        baseline = filed_keys(node.revocations)
        for round_ in (1, 2):
            await flood(client, channel, node.replica.store_seq + 1)
            unconfirmed = FORGED * round_
            await eventually(
                lambda u=unconfirmed: node.stats.rejected["unconfirmed"] >= u, within=20
            )
            await eventually(lambda: node.replica.overlay_count == 0, within=5)
            # Every forgery was shed: the node holds no revocation at all ...
            assert len(node.revocations) == 0
            node.revocations.sweep()
    finally:
        await client.aclose()
    retained = filed_keys(node.revocations) - baseline
    # ... and its expiry index may keep a constant number of stale copies (it rebuilds
    # past COMPACT_AFTER), never one per forged message.
    assert retained <= 2 * COMPACT_AFTER < FORGED, (
        f"after {2 * FORGED} forged restrictions, all shed, the node holds 0 revocations "
        f"but its expiry buckets retain {retained} keys of 256 characters and "
        f"{heap_size(node.revocations)} bucket ids: memory grows with every forged "
        f"message, not with live revocations"
    )
