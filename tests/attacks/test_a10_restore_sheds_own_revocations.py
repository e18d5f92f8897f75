"""Attack 10 (operator restores the store): after a restore, a node's own fresh
revocations are dropped by the node itself at its next catch-up, and it accepts
tokens it has just revoked -- tokens the store says are revoked.

Guarantee 2 (docs/design.md): the node that revoked refuses the token as soon as
``revoke()`` returns.  Guarantee 9: a store that went back in time is noticed at the
next catch-up.  The fix for own writes numbered below the cursor (``apply_local`` holds
them as overlays and asks for a catch-up, "which tells which") relies on that
catch-up noticing the restore.

Scenario (one node, SQLite restored into the live file with the sqlite3 backup API):
X revokes three tokens (seq 1..3) and catches up (cursor 3).  A backup taken at head 1
is restored.  X then logs three users out at once (``revoke_many`` of T, U, V): the
store numbers them 2, 3, 4.  T and U are numbered at or below X's cursor, so X holds
them as overlays and asks for a catch-up; V (4) is beyond it and becomes X's "newest
known write".  The catch-up finds V in the history ring with its own stamp, takes
everything up to seq 4 as intact (so the lost rows 2 and 3 it read before are never
checked), reads nothing new, and sheds the overlays of T and U as "unconfirmed"
(``revsync.restriction_unconfirmed``: "the store holds no such change").  X now
accepts T and U, which ``revoke_many`` just returned as revoked and the store holds
as revoked; it never corrects this.

Root cause: revsync/_replica.py ``Replica._lost_history`` (a ring match at the node's
own post-restore write vouches for every write below it) with ``Replica.apply_local``
(the batch's last write becomes ``_newest``) and ``Replica._shed`` (the below-cursor
overlays of the node's own writes are shed when the catch-up does not re-read them).
Severity: a revoked token accepted indefinitely by the node that revoked it.
Failed before the fix; kept as a regression test.
"""

from __future__ import annotations

from pathlib import Path

from revsync import RevSync
from revsync.changes import Kind
from tests.engine.conftest import NodeFactory, claims, eventually
from tests.regressions.test_f05_store_sequence_goes_backwards import SqliteBackup


async def catch_up(node: RevSync) -> None:
    done = node.stats.resyncs
    node.subscriber.request_catch_up()
    await eventually(lambda: node.stats.resyncs > done, within=5)


async def test_a_node_keeps_refusing_what_it_revoked_after_a_restore(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    backup = SqliteBackup(tmp_path / "revsync.db")
    x = await make_node(backup.url, resync_interval=600)
    await x.revoke(claims())  # seq 1
    await backup.backup()  # head 1
    await x.revoke(claims())  # seq 2
    await x.revoke(claims())  # seq 3
    await catch_up(x)
    assert x.replica.store_seq == 3

    await backup.restore()  # head 1
    t, u, v = claims(), claims(), claims()
    changes = await x.revoke_many([t, u, v])
    assert [c.seq for c in changes] == [2, 3, 4]
    assert all(x.is_revoked(token) for token in (t, u, v))  # at once, as promised

    for _ in range(3):
        await catch_up(x)
    rows = [await x.store.get(Kind.JTI, str(token["jti"])) for token in (t, u, v)]
    assert all(row is not None and row.revoked for row in rows)
    accepted = [
        name for name, token in zip("TUV", (t, u, v), strict=True) if not x.is_revoked(token)
    ]
    assert not accepted, (
        f"X revoked T, U, V (seq 2, 3, 4; the store holds all three as revoked), yet after "
        f"its catch-ups it accepts {accepted} (store_resets={x.stats.store_resets}, "
        f"unconfirmed={x.stats.rejected['unconfirmed']})"
    )
