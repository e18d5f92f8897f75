"""A checkpoint against a SQLite store restored from an older copy (no new epoch)
and written past the checkpoint's seq by more than the history ring holds, the
checkpoint's last rows short-lived (docs/design.md, "Checkpoints", "When the store goes
back in time"): the restarted node must not page on from the checkpoint's seq over
changes the restored store numbered below it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from revsync._replica import Replica
from revsync._revocation_set import RevocationSet
from revsync._stats import SyncStats
from revsync.changes import ChangeRequest, Kind
from revsync.stores import store_from_url
from revsync.stores._common import HISTORY_SLOTS


async def test_a_restored_store_written_past_the_checkpoint_is_not_paged_from_it(
    tmp_path: Path,
) -> None:
    db = tmp_path / "store.db"
    url = f"sqlite:///{db}"
    checkpoint = tmp_path / "node.checkpoint"
    now = time.time()
    store = store_from_url(url)
    await store.connect()
    await store.write(ChangeRequest(Kind.JTI, "before", True, now + 3600))
    await store.close()
    shutil.copy(db, tmp_path / "backup.db")  # the operator's backup, at seq 1
    store = store_from_url(url)
    await store.connect()
    for key in ("short-1", "short-2"):  # short-lived tokens: the checkpoint's last rows
        await store.write(ChangeRequest(Kind.JTI, key, True, now + 60))
    first = Replica(store, RevocationSet(), SyncStats(), checkpoint=checkpoint)
    await first.catch_up()
    await first.save_checkpoint()
    await store.close()
    # Restored from the backup (seq 1), without a new epoch; then written on.
    shutil.copy(tmp_path / "backup.db", db)
    store = store_from_url(url)
    await store.connect()
    try:
        victim = await store.write(ChangeRequest(Kind.JTI, "victim", True, now + 3600))
        assert victim is not None
        assert victim.seq == 2  # below the checkpoint's seq 3
        for n in range(HISTORY_SLOTS + 10):  # the ring turns over
            await store.write(ChangeRequest(Kind.JTI, f"later-{n}", True, now + 3600))
        node = Replica(store, RevocationSet(), SyncStats(), checkpoint=checkpoint)
        await node.catch_up()
        assert node.revocations.contains_jti("victim"), "a revocation the store holds is missed"
        assert not node.revocations.contains_jti("short-1")
    finally:
        await store.close()
