"""The Redis store's index emptied for a rebuild while another node reads its spans.

Real Redis, real scripts; the older node is simulated with the write and prune scripts
of the revsync before the index (tests/contract/unindexed_lua), as in
tests/contract/test_redis_snapshot_index.py.

A rolling upgrade: node A plans its snapshot on a complete index and reads it span by
span.  Meanwhile an older node prunes expired rows (or revokes), which keeps no index,
and node B starts: its plan finds the index not to be trusted and empties its sets to
build them afresh, row by row, which takes B seconds at a million rows.  The spans A
has not read yet are empty then: before the fix A came out of its catch-up without
most of the store's revocations (and its identity cut-offs), while a node paging
since(0) held them all.  Now the snapshot checks, after its last span, that the index
is still the one it planned on and still complete, and reads again if not.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest

from revsync._replica import Replica
from revsync._revocation_set import RevocationSet
from revsync._stats import SyncStats
from revsync.changes import Kind
from revsync.stores import _redis_snapshot
from revsync.stores import redis as redis_store
from revsync.stores.redis import RedisStore
from tests.contract.conftest import StoreFactory
from tests.contract.test_redis_snapshot_index import (
    _client,
    assert_indexed,
    assert_snapshot_is_since,
    drop_index,
    old_prune,
    old_write,
    revoke,
    state_of,
)
from tests.contract.test_store_snapshot import Paged, contents

pytestmark = pytest.mark.parametrize("backend", ["redis"])


async def _seeded(store_factory: StoreFactory, now: float) -> RedisStore:
    store = await store_factory()
    assert isinstance(store, RedisStore)
    await store.write_many([revoke(f"j{n}", now + 3600 + n) for n in range(40)])
    await store.write(revoke("gone", now - 100))  # expired, not pruned yet
    await store.write(revoke("bob", now + 5000, Kind.IDENTITY, identity="bob", cutoff=now - 1))
    await assert_indexed(store)
    return store


async def _reference(store: RedisStore) -> Replica:
    paged = Replica(Paged(store), RevocationSet(), SyncStats())
    await paged.catch_up()
    return paged


@pytest.mark.parametrize("older", ["prune", "write"])
async def test_a_rebuild_begun_under_the_spans_misses_nothing(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch, older: str
) -> None:
    now = time.time()
    monkeypatch.setattr(redis_store, "SNAPSHOT_CHUNK", 5)  # 8 spans of revoked jtis
    monkeypatch.setattr(redis_store, "HIREDIS_AVAILABLE", False)
    reader = await _seeded(store_factory, now)
    starter = await store_factory()
    assert isinstance(starter, RedisStore)

    # B: plans (emptying the index), then walks slowly: held until A is done.
    walking, release = asyncio.Event(), asyncio.Event()
    b_original = starter._call

    async def b_call(what: str, script: str, keys: list[str], args: list[Any]) -> Any:
        if script == "snapshot":
            walking.set()
            await release.wait()
        return await b_original(what, script, keys, args)

    monkeypatch.setattr(starter, "_call", b_call)
    b_task: asyncio.Task[Any] | None = None
    a_original = reader._call
    spans = 0

    async def a_call(what: str, script: str, keys: list[str], args: list[Any]) -> Any:
        nonlocal spans, b_task
        if script == "snapshot_index":
            spans += 1
            if spans == 3:  # two spans read, the rest to come
                if older == "prune":
                    await old_prune(reader, now)  # "gone": the index still lists it
                else:
                    await old_write(reader, [revoke("older", now + 600.5)])
                b_task = asyncio.create_task(starter.snapshot(now))
                await walking.wait()
                assert state_of(reader).get("complete") != "1"  # B emptied the index
        return await a_original(what, script, keys, args)

    monkeypatch.setattr(reader, "_call", a_call)
    node = Replica(reader, RevocationSet(), SyncStats())
    await node.catch_up()
    assert spans >= 3
    assert b_task is not None
    release.set()
    await b_task
    assert contents(node.revocations) == contents((await _reference(reader)).revocations)
    assert node.revocations.cutoff("bob") == now - 1
    monkeypatch.setattr(reader, "_call", a_original)
    await assert_snapshot_is_since(reader, now)


async def test_a_build_restarted_under_a_builder_is_not_marked_complete(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Node A builds the index row by row.  Between its chunks an older node prunes a
    # row A listed, so node C (which joined A's build) fails to finish it, and node D
    # starts it afresh from the same head (prunes do not move it): the same "since"
    # as A's, its sets emptied of what A listed so far.  D is then cancelled (a start-up
    # that never finished).  A lists the rest, and before it finishes the older node
    # prunes three more rows A listed: the index holds as many entries as the log has
    # rows.  Before the fix A's finish found its own "since" and equal counts and marked
    # the index complete, missing the three live revocations of A's first chunk; every
    # node started after that read the index and missed them.
    now = time.time()
    monkeypatch.setattr(redis_store, "SNAPSHOT_CHUNK", 16)  # a build reads 4 rows a run
    monkeypatch.setattr(redis_store, "HIREDIS_AVAILABLE", False)
    store = await store_factory()
    assert isinstance(store, RedisStore)
    live = [revoke(f"L{n}", now + 3600 + n) for n in range(1, 13)]
    soon = [revoke(f"X{n}", now - 10) for n in range(1, 4)]
    # By seq: P L1 L2 L3 | X1 X2 X3 L4 | L5 ... : A's chunks of four rows.
    await store.write_many([revoke("P", now - 2000), *live[:3], *soon, *live[3:]])
    drop_index(store)
    joiner, restarter, late = [await store_factory() for _ in range(3)]
    assert isinstance(joiner, RedisStore)
    assert isinstance(restarter, RedisStore)

    held = asyncio.Event()
    d_original = restarter._call

    async def d_call(what: str, script: str, keys: list[str], args: list[Any]) -> Any:
        if script == "snapshot":
            held.set()
            await asyncio.Event().wait()  # walking slowly, until cancelled
        return await d_original(what, script, keys, args)

    monkeypatch.setattr(restarter, "_call", d_call)
    d_task: asyncio.Task[Any] | None = None
    a_original = store._call
    chunks = 0

    async def a_call(what: str, script: str, keys: list[str], args: list[Any]) -> Any:
        nonlocal chunks, d_task
        if script == "snapshot":
            chunks += 1
            if chunks == 2:  # P L1 L2 L3 listed
                await old_prune(store, now - 1000)  # P: still listed
                await joiner.snapshot(now)  # C joins, lists every row, cannot finish
                assert "since" not in state_of(store)
                d_task = asyncio.create_task(restarter.snapshot(now))
                await held.wait()  # D emptied the index; its walk goes on slowly
                d_task.cancel()
        elif script == "index_finish":
            await old_prune(store, now)  # X1 X2 X3: still listed
        return await a_original(what, script, keys, args)

    monkeypatch.setattr(store, "_call", a_call)
    await store.snapshot(now)  # A's rows are right: it read them; the index is the point
    assert d_task is not None
    with contextlib.suppress(asyncio.CancelledError):
        await d_task
    monkeypatch.setattr(store, "_call", a_original)

    node = Replica(late, RevocationSet(), SyncStats())
    await node.catch_up()
    assert contents(node.revocations) == contents((await _reference(store)).revocations)
    for request in live:
        assert node.revocations.contains_jti(request.key)
    await assert_snapshot_is_since(store, now)
    await assert_indexed(store)


async def test_a_set_of_the_index_lost_under_the_spans_is_noticed(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Redis evicting a key under allkeys-lru (the index's set of cut-offs and
    # tombstones is its least written key) or an operator deleting it, after A's plan:
    # before the fix A read no "others" and missed the identity cut-off.  (A store that
    # evicts keys loses rows too; this is only about the index agreeing with them.)
    now = time.time()
    monkeypatch.setattr(redis_store, "SNAPSHOT_CHUNK", 5)
    monkeypatch.setattr(redis_store, "HIREDIS_AVAILABLE", False)
    reader = await _seeded(store_factory, now)
    a_original = reader._call
    spans = 0

    async def a_call(what: str, script: str, keys: list[str], args: list[Any]) -> Any:
        nonlocal spans
        if script == "snapshot_index":
            spans += 1
            if spans == 3:
                client = _client(reader)
                try:
                    client.delete(reader._keys.indexed_others)
                finally:
                    client.close()
        return await a_original(what, script, keys, args)

    monkeypatch.setattr(reader, "_call", a_call)
    node = Replica(reader, RevocationSet(), SyncStats())
    await node.catch_up()
    assert spans >= 3
    assert node.revocations.cutoff("bob") == now - 1
    assert contents(node.revocations) == contents((await _reference(reader)).revocations)
    monkeypatch.setattr(reader, "_call", a_original)
    await assert_snapshot_is_since(reader, now)
    await assert_indexed(reader)


async def test_after_its_last_try_the_snapshot_reads_row_by_row(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The way out when the index keeps being rebuilt under the reads: row by row, which
    # needs none of it.  With no index read left to try, an entry changed in the index
    # alone does not show, and the snapshot is since(0)'s live rows all the same.
    now = time.time()
    monkeypatch.setattr(_redis_snapshot, "INDEX_READS", 0)
    store = await _seeded(store_factory, now)
    client = _client(store)
    try:
        client.zadd(store._keys.indexed_revoked, {"forged\n99999999999.5": 3})
        client.zrem(store._keys.indexed_revoked, f"j3\n{now + 3603!r}")
    finally:
        client.close()
    snapshot = await store.snapshot(now)
    assert "forged" not in snapshot.revoked[0]
    assert "j3" in snapshot.revoked[0]
    monkeypatch.setattr(_redis_snapshot, "INDEX_READS", 3)
    await assert_snapshot_is_since(store, now)  # the index read again: it was rebuilt
