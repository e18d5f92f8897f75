"""A start-up snapshot read while other writers revoke, re-revoke (a later and an
earlier expiry) and unrevoke the same targets, every store, real, with spans and Redis
chunks small enough that the writes land between them (docs/design.md, "The start-up
snapshot"): after its catch-up the node holds exactly what a node paging the store
from 0 holds, and an unrevoke written meanwhile wins over the revoke the snapshot saw.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from revsync._replica import Replica
from revsync._revocation_set import RevocationSet
from revsync._stats import SyncStats
from revsync.changes import ChangeRequest, Kind
from revsync.stores import Store, base
from revsync.stores import redis as redis_store
from tests.contract.conftest import StoreFactory
from tests.contract.test_store_snapshot import Paged, contents

NOW = time.time()


@pytest.fixture(autouse=True)
def _clock_starts_with_the_test() -> None:
    # Expiries here are relative to NOW and some are minutes away; the whole suite
    # runs longer than that, so each test takes its own NOW, not the import's.
    global NOW
    NOW = time.time()


KEYS = [f"k{n}" for n in range(60)]


async def _churn(store: Store, stop: asyncio.Event, seed: int) -> int:
    rng = random.Random(seed)
    writes = 0
    while not stop.is_set():
        batch = []
        for key in rng.sample(KEYS, 5):
            revoked = rng.random() < 0.6
            expiry = NOW + rng.choice([600.5, 3600.25, 7200.125]) if revoked else 0.0
            batch.append(ChangeRequest(Kind.JTI, key, revoked, expiry))
        await store.write_many(batch)
        writes += 1
        await asyncio.sleep(0)
    return writes


@pytest.mark.parametrize("chunk", [3, 17])
async def test_a_snapshot_read_under_writes_misses_nothing(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(base, "SNAPSHOT_SPAN", chunk)
    monkeypatch.setattr(redis_store, "SNAPSHOT_CHUNK", chunk)
    seeder = await store_factory()
    await seeder.write_many([ChangeRequest(Kind.JTI, k, True, NOW + 1800.5) for k in KEYS])
    writers = [await store_factory() for _ in range(2)]
    for attempt in range(3):
        stop = asyncio.Event()
        churn = [
            asyncio.create_task(_churn(w, stop, attempt * 10 + i)) for i, w in enumerate(writers)
        ]
        await asyncio.sleep(0.01)
        reader = await store_factory()
        node = Replica(reader, RevocationSet(), SyncStats())
        await node.catch_up()  # the snapshot, read while the writers go on
        stop.set()
        assert all(n > 0 for n in await asyncio.gather(*churn))
        await node.catch_up()  # everything after the snapshot's seq
        reference = Replica(Paged(reader), RevocationSet(), SyncStats())  # type: ignore[arg-type]
        await reference.catch_up()
        assert contents(node.revocations) == contents(reference.revocations)
