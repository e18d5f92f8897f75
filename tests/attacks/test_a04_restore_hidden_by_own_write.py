"""Attack 4 (operator restores the store): a node that writes after the restore takes
its own new write as proof that the store's history is intact, never notices that a
change it holds was lost, and accepts a token the store says is revoked -- for good.

Guarantee 9 (docs/design.md): "When the store goes back in time (... a restore from a
backup) every node notices at its next catch-up, re-reads everything, and says so
loudly."  ``Replica._lost_history`` checks the newest write the node knows in the
store's history ring and, when its entry matches, treats "every write up to it" as
intact and skips the anchors and witnesses below it.

Scenario (three nodes, the store restored into the live file while they run, no ring
wrap-around needed, two ordinary writes after the restore):

1. Token T is revoked (seq 1); two more revocations (seq 2, 3); every node catches up
   to seq 3.  The operator takes a backup (head 3).
2. Node X unrevokes T (seq 4): X applies it as its own write, Y and Z read it through
   the ``unrevoke`` doorbell.  Every node now accepts T.
3. The backup is restored into the live file: the store is back at head 3 and says T
   is revoked (seq 1).  The unrevoke is lost.
4. Business as usual: Y revokes U (numbered 4 again), then X revokes V (numbered 5).
   Each writer records its own write as "the newest write it knows"
   (``Replica.apply_local`` -> ``_note_newest``).
5. Every node catches up (several times).

Z, which wrote nothing, checks its newest known write (seq 3, intact), then its
witness (T at seq 4 -> now seq 1: went back) and re-reads the store: Z refuses T.  X
and Y check their newest known write -- their own post-restore write, which of course
is in the ring with the same stamp -- conclude that everything up to it is intact, skip
the witness (Y) and never look at their own lost write (X keeps it in ``_ahead`` only,
which is not an anchor).  They read only rows numbered above 3 (U, V) and hold T
unrevoked, while reporting themselves in sync.

Root cause: revsync/_replica.py ``Replica._lost_history`` (a ring match at seq S is taken
to vouch for every write below S, including changes this node learned before the
restore) together with ``Replica.apply_local`` (a write made after the restore becomes
the node's "newest known write"; the node's own writes are never anchors or
witnesses).  Severity: a revoked token accepted indefinitely (until it expires) by
every node that wrote after the restore.  Failed before the fix (kept as a regression test) on both
stores.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from revsync import RevSync
from revsync.changes import Kind
from tests.engine.conftest import NodeFactory, claims, eventually
from tests.regressions.test_f05_store_sequence_goes_backwards import RedisBackup, SqliteBackup


@pytest.fixture(params=["sqlite", "redis"])
async def restorable(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> AsyncIterator[Any]:
    store: Any
    if request.param == "sqlite":
        store = SqliteBackup(tmp_path / "revsync.db")
    else:
        store = RedisBackup(redis_url)
    yield store
    await store.close()


async def catch_up(node: RevSync) -> None:
    done = node.stats.resyncs
    node.subscriber.request_catch_up()
    await eventually(lambda: node.stats.resyncs > done, within=5)


async def test_every_node_notices_a_restore_even_after_writing_since(
    make_node: NodeFactory, restorable: Any
) -> None:
    url = restorable.url
    # Resync timer off: the test says when each node catches up.
    x = await make_node(url, resync_interval=600, node_id="x")
    y = await make_node(url, resync_interval=600, node_id="y")
    z = await make_node(url, resync_interval=600, node_id="z")
    nodes = {"x": x, "y": y, "z": z}

    target = claims()
    await y.revoke(target)  # seq 1
    await y.revoke(claims())  # seq 2
    await y.revoke(claims())  # seq 3
    for node in nodes.values():
        await catch_up(node)
        assert node.replica.store_seq == 3
    await restorable.backup()  # head 3: T revoked

    await x.unrevoke(str(target["jti"]))  # seq 4, lost by the restore below
    await eventually(lambda: not any(n.is_revoked(target) for n in nodes.values()))

    await restorable.restore()  # the store is back at head 3: T revoked (seq 1)
    u = await y.revoke(claims())
    v = await x.revoke(claims())
    assert (u.seq, v.seq) == (4, 5), "numbers reused after the restore"
    await asyncio.sleep(0.2)  # the events of U and V reach every node

    for _ in range(3):
        for node in nodes.values():
            await catch_up(node)

    row = await x.store.get(Kind.JTI, str(target["jti"]))
    assert row is not None
    assert row.revoked
    accepting = {
        name: {
            "store_resets": node.stats.store_resets,
            "ready": node.status()["ready"],
            "store_seq": node.replica.store_seq,
        }
        for name, node in nodes.items()
        if not node.is_revoked(target)
    }
    assert not accepting, (
        f"the store says T is revoked (seq {row.seq}) after the restore, yet these "
        f"nodes accept it after three catch-ups each, never having noticed the "
        f"restore: {accepting}"
    )
