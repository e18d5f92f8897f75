"""revsync._store_history: telling whether the history a node read is still the store's,
against a real SQLite store and its history ring."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from revsync._store_history import HistoryWatch, changed_while_reading
from revsync.changes import ChangeRequest, Kind
from revsync.stores.base import StorePosition
from revsync.stores.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "revsync.db")
    await store.connect()
    yield store
    await store.close()


def revoke(key: str) -> ChangeRequest:
    return ChangeRequest(Kind.JTI, key, True, time.time() + 3600, None)


async def test_an_intact_store_did_not_change_while_read(store: SqliteStore) -> None:
    await store.write(revoke("a"))
    before = await store.position()
    assert await changed_while_reading(store, before, before) is None
    await store.write(revoke("b"))
    assert await changed_while_reading(store, before, await store.position()) is None


async def test_a_new_identity_or_epoch_while_reading(store: SqliteStore) -> None:
    before = await store.position()
    after = await store.new_epoch()
    assert await changed_while_reading(store, before, after) == (
        "the store's identity or epoch changed while this node read it"
    )
    other = before._replace(store_id="another")
    assert await changed_while_reading(store, other, before) is not None


async def test_a_head_that_went_back_while_reading(store: SqliteStore) -> None:
    await store.write(revoke("a"))
    before = await store.position()
    after = before._replace(head=before.head - 1, stamp=None)
    assert await changed_while_reading(store, before, after) == (
        "the store's head went back from 1 to 0 while read"
    )


async def test_the_first_write_gone_or_renumbered_while_reading(store: SqliteStore) -> None:
    await store.write(revoke("a"))
    first = await store.position()
    await store.write(revoke("b"))
    later = await store.position()
    # seq 1 now names another write: its stamp in the ring differs.
    forged_before = first._replace(stamp=(first.stamp or 0) + 1)
    assert await changed_while_reading(store, forged_before, later) == (
        "the write of seq 1 vanished while this node read the store: "
        "its seq now names another write"
    )
    # The same head, another write.
    assert await changed_while_reading(store, later._replace(stamp=1.0), later) == (
        "seq 2 names another write than when this node began reading"
    )


async def test_a_seq_whose_ring_slot_is_empty_is_gone(store: SqliteStore) -> None:
    await store.write_many([revoke("a"), revoke("b"), revoke("c")])  # ring: seq 3 only
    before = StorePosition((await store.position()).store_id, 1, 2, 12345.0)
    assert await changed_while_reading(store, before, await store.position()) is not None


async def test_a_store_without_stamps_is_not_judged(store: SqliteStore) -> None:
    before = StorePosition((await store.position()).store_id, 1, 0, None)
    await store.write(revoke("a"))
    assert await changed_while_reading(store, before, await store.position()) is None


async def test_the_frontier_moves_only_to_a_position_read_past(store: SqliteStore) -> None:
    watch = HistoryWatch(store)
    one = await store.write(revoke("a"))
    before = await store.position()
    await store.write(revoke("b"))
    after = await store.position()
    watch.verified(before, after, store_seq=one.seq)  # read up to 1 only
    assert watch.position == after
    assert watch._frontier == (before.head, before.stamp)
    watch.verified(before, after, store_seq=after.head)
    assert watch._frontier == (after.head, after.stamp)
    watch.restart([])
    assert watch._frontier is None


async def test_nothing_to_check_before_the_first_position(store: SqliteStore) -> None:
    watch = HistoryWatch(store)
    position = await store.position()
    assert await watch.lost(position._replace(epoch=9), seen=100) is None
