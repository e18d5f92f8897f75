"""Several nodes opening one new SQLite file at once all connect.

Switching a file to WAL needs it to oneself, and SQLite answers "database is locked"
at once, without waiting for busy_timeout, to a connection that loses that race: one
node of several started together on a new file failed to start (16 of 150 trials
here before the switch was retried).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from revsync.changes import ChangeRequest, Kind
from revsync.stores.sqlite import SqliteStore

TRIALS = 40
NODES = 6


async def test_nodes_opening_a_new_file_together_all_connect(tmp_path: Path) -> None:
    for trial in range(TRIALS):
        path = tmp_path / f"trial-{trial}.db"
        stores = [SqliteStore(path) for _ in range(NODES)]
        try:
            await asyncio.gather(*(store.connect() for store in stores))
            change = await stores[-1].write(ChangeRequest(Kind.JTI, "t", True, 2e9, None))
            assert (await stores[0].get(Kind.JTI, "t")) == change
            positions = {(await store.position()).store_id for store in stores}
            assert len(positions) == 1
        finally:
            for store in stores:
                await store.close()
