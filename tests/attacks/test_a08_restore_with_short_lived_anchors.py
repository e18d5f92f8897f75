"""Attack 8 (operator restores the store): a node whose last rows read were short-lived
revocations never learns revocations written, after the restore, under numbers it had
already read -- once one batch has turned the history ring over.

Guarantee 9 (docs/design.md): after a restore "every node notices at its next
catch-up, re-reads everything, and says so loudly"; "The anchors catch what the head
cannot: a store that lost its last writes and then took new ones, reusing their
numbers, until its head passed the node's cursor."

Scenario (node X only reads; node W writes; the store restored into the live file):

1. W revokes two long-lived tokens (seq 1, 2); X catches up.  Backup (head 2).
2. W revokes two access tokens with 200 s left to live (seq 3, 4) -- logouts near the
   end of a 15-minute token are like that.  X catches up: its cursor is 4, its anchors
   are those two rows, its newest known write is seq 4.
3. The backup is restored: head 2, rows 3 and 4 gone.
4. An administrator revokes 4098 tokens at once (``revoke_many``), V among the first:
   they are numbered 3 .. 4100 (V = 3).  Only the last is announced (a batch above
   ``PUBLISH_EACH_LIMIT``); its seq gap makes X catch up at once.

X's check: head 4100 >= 4; the ring slot of seq 4 now holds seq 4100 (inconclusive);
the anchors (rows 3 and 4) vanished but had less than ``ANCHOR_MARGIN`` (300 s) to
live, so they are taken for pruned rows.  Nothing looks lost; X reads rows after 4
only, and never reads V (numbered 3) nor the row numbered 4.  X accepts V until it
expires, reporting itself in sync.  (The batch size only makes the wrap-around exact
with one write; any 4096 writes between the restore and X's next catch-up that do not
reach X over the bus -- e.g. while Redis is down -- do the same.)

Root cause: revsync/_replica.py ``Replica._lost_history`` (an inconclusive ring entry
falls back to anchors, and a vanished anchor close to its expiry is presumed pruned:
``ANCHOR_MARGIN``).  Severity: revocations never applied on that node (until the
tokens expire).  Failed before the fix; kept as a regression test.
"""

from __future__ import annotations

import time
from pathlib import Path

from revsync import RevSync
from revsync.changes import Kind
from tests.engine.conftest import NodeFactory, claims, eventually
from tests.regressions.test_f05_store_sequence_goes_backwards import SqliteBackup

BATCH = 4098


async def catch_up(node: RevSync) -> None:
    done = node.stats.resyncs
    node.subscriber.request_catch_up()
    await eventually(lambda: node.stats.resyncs > done, within=10)


async def test_a_restore_is_noticed_when_the_last_rows_read_were_short_lived(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    backup = SqliteBackup(tmp_path / "revsync.db")
    x = await make_node(backup.url, resync_interval=600, node_id="x")
    w = await make_node(backup.url, resync_interval=600, node_id="w")

    await w.revoke(claims())  # seq 1
    await w.revoke(claims())  # seq 2
    await catch_up(x)
    await backup.backup()  # head 2

    soon = time.time() + 200
    await w.revoke(claims(exp=soon))  # seq 3, lost by the restore
    await w.revoke(claims(exp=soon))  # seq 4, lost by the restore
    await catch_up(x)
    assert x.replica.store_seq == 4

    await backup.restore()
    victim = claims()
    batch = [victim] + [claims() for _ in range(BATCH - 1)]
    changes = await w.revoke_many(batch)
    assert (changes[0].seq, changes[-1].seq) == (3, 2 + BATCH)
    row = await w.store.get(Kind.JTI, str(victim["jti"]))
    assert row is not None
    assert row.revoked

    await eventually(lambda: x.replica.store_seq >= 2 + BATCH, within=10)  # the gap
    for _ in range(2):
        await catch_up(x)
    assert x.is_revoked(victim), (
        f"the store revokes V (seq {row.seq}), yet X accepts it after three catch-ups "
        f"(store_resets={x.stats.store_resets}, store_seq={x.replica.store_seq}, "
        f"ready={x.status()['ready']})"
    )
