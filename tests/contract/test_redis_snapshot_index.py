"""The Redis store's snapshot index (revsync/stores/lua/index.lua), against its rows.

Real Redis.  After every kind of write (revoke, re-revoke with a later and an earlier
expiry, unrevoke, a target twice in one batch, identity cut-offs and lifts,
registrations, prune, new_epoch, a batch written in parts) the index lists exactly the
rows ``since(0)`` returns, each in its set, by its seq, and says it is current with the
head.  A store whose index is missing (written by a revsync without it: simulated by
deleting the index, or by writing with the scripts minus the index) is read row by row
and indexed by its first snapshot, also while writers go on; a write or prune that
keeps no index makes the next snapshot build it again instead of trusting it.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from revsync._replica import Replica
from revsync._revocation_set import RevocationSet
from revsync._stats import SyncStats
from revsync.changes import Change, ChangeRequest, Kind
from revsync.stores import Store
from revsync.stores import redis as redis_store
from revsync.stores._tokens import TokenRecord
from revsync.stores.base import StoreError
from revsync.stores.redis import RedisStore, _ChangeArgs, _flat, lua_script
from tests.contract.conftest import StoreFactory, backend_url
from tests.contract.test_store_snapshot import ODD_KEYS, Paged, contents, fill

NOW = time.time()


@pytest.fixture(autouse=True)
def _clock_starts_with_the_test() -> None:
    global NOW
    NOW = time.time()


@pytest.fixture
def store_url(request: pytest.FixtureRequest) -> str:
    """The Redis store alone (the contract's fixtures, one backend)."""
    return backend_url(request, "redis")


def _client(store: Store) -> redis.Redis | RedisCluster:
    """A plain client on the store's data (a Cluster's through its first node)."""
    assert isinstance(store, RedisStore)
    url = store._client_url
    if url.startswith("redis+cluster://"):
        first = url.split("://", 1)[1].split(",", 1)[0].split("?", 1)[0]
        return RedisCluster.from_url(f"redis://{first}")
    return redis.Redis.from_url(url)


def _sets(store: RedisStore) -> dict[str, str]:
    k = store._keys
    return {
        "revoked": k.indexed_revoked,
        "registered": k.indexed_registered,
        "others": k.indexed_others,
    }


def index_of(store: Store) -> dict[str, dict[str, int]]:
    """What the index lists: set -> {member: seq}."""
    assert isinstance(store, RedisStore)
    client = _client(store)
    try:
        return {
            name: {m.decode(): int(s) for m, s in client.zrange(key, 0, -1, withscores=True)}
            for name, key in _sets(store).items()
        }
    finally:
        client.close()


def state_of(store: Store) -> dict[str, str]:
    assert isinstance(store, RedisStore)
    client = _client(store)
    try:
        return {k.decode(): v.decode() for k, v in client.hgetall(store._keys.index).items()}
    finally:
        client.close()


async def rows_of(store: Store) -> list[Change]:
    rows: list[Change] = []
    while page := await store.since(rows[-1].seq if rows else 0, 1000):
        rows += page
    return rows


def listed(rows: list[Change]) -> dict[str, dict[str, int]]:
    """What the index must list for ``rows``."""
    want: dict[str, dict[str, int]] = {"revoked": {}, "registered": {}, "others": {}}
    for r in rows:
        if r.kind is Kind.JTI and r.revoked:
            want["revoked"][f"{r.key}\n{r.expires_at!r}"] = r.seq
        elif r.kind is Kind.ISSUED and not r.revoked:
            want["registered"][f"{r.key}\n{r.expires_at!r}"] = r.seq
        else:
            want["others"][f"{r.kind.value}:{r.key}"] = r.seq
    return want


async def assert_indexed(store: Store) -> None:
    """The index lists exactly the store's rows and is current with its head."""
    assert index_of(store) == listed(await rows_of(store))
    state = state_of(store)
    assert state.get("complete") == "1"
    assert state.get("seq") == str(await store.head())


async def assert_snapshot_is_since(store: Store, live_after: float) -> None:
    """The snapshot holds the live rows since(0) returns, split as they should be."""
    assert isinstance(store, RedisStore)
    snapshot = await store.snapshot(live_after)
    live = [r for r in await rows_of(store) if r.expires_at >= live_after]
    jtis = sorted((r.key, r.expires_at) for r in live if r.kind is Kind.JTI and r.revoked)
    registered = sorted(
        (r.key, r.expires_at) for r in live if r.kind is Kind.ISSUED and not r.revoked
    )
    others = sorted(
        r for r in live if not (r.kind is Kind.JTI and r.revoked) and r.kind is not Kind.ISSUED
    )
    assert sorted(zip(*snapshot.revoked, strict=True)) == jtis
    assert sorted(zip(*snapshot.registered, strict=True)) == registered
    assert sorted(snapshot.others) == others
    assert snapshot.seq == await store.head()


def revoke(key: str, expires_at: float, kind: Kind = Kind.JTI, **extra: Any) -> ChangeRequest:
    return ChangeRequest(kind, key, True, expires_at, **extra)


def unrevoke(key: str, kind: Kind = Kind.JTI, **extra: Any) -> ChangeRequest:
    return ChangeRequest(kind, key, False, 0.0, **extra)


async def test_every_kind_of_write_leaves_the_index_equal_to_the_rows(store: Store) -> None:
    assert isinstance(store, RedisStore)
    steps: list[tuple[str, Any]] = [
        ("revoke", lambda: store.write(revoke("a", NOW + 100.125, identity="u1"))),
        ("re-revoke, later expiry", lambda: store.write(revoke("a", NOW + 900.5))),
        ("re-revoke, earlier expiry (kept)", lambda: store.write(revoke("a", NOW + 50.25))),
        ("unrevoke: a tombstone", lambda: store.write(unrevoke("a"))),
        ("revoke over the tombstone", lambda: store.write(revoke("a", NOW + 30.75))),
        (
            "identity cut-off",
            lambda: store.write(revoke("u1", NOW + 500, Kind.IDENTITY, cutoff=NOW)),
        ),
        ("identity lifted", lambda: store.write(unrevoke("u1", Kind.IDENTITY))),
        (
            "one batch: revoked then unrevoked",
            lambda: store.write_many([revoke("b", NOW + 70.5), unrevoke("b")]),
        ),
        (
            "one batch: unrevoked then revoked twice",
            lambda: store.write_many(
                [unrevoke("c"), revoke("c", NOW + 10.5), revoke("c", NOW + 20.5)]
            ),
        ),
        (
            "one batch: an old row rewritten twice",
            lambda: store.write_many(
                [revoke("a", NOW + 40.5), unrevoke("a"), revoke("a", NOW + 5)]
            ),
        ),
        ("odd keys", lambda: store.write_many([revoke(k, NOW + 7200.000001) for k in ODD_KEYS])),
        (
            "registrations",
            lambda: store.register(
                [
                    TokenRecord("r1", "u1", "access", None, NOW, NOW + 600.25, {}),
                    TokenRecord("r2", "u1", "refresh", "fam", NOW, NOW + 900.5, {}),
                ]
            ),
        ),
        ("a registration revoked", lambda: store.write(revoke("r1", NOW + 600.25, Kind.ISSUED))),
        (
            "expired rows",
            lambda: store.write_many([revoke("x1", NOW - 50), revoke("x2", NOW - 40)]),
        ),
        ("prune", lambda: store.prune(NOW)),
        ("new epoch", store.new_epoch),
    ]
    for name, step in steps:
        await step()
        try:
            await assert_indexed(store)
        except AssertionError as exc:
            raise AssertionError(f"after {name}: {exc}") from exc
    assert "x1\n" not in " ".join(index_of(store)["revoked"])  # pruned rows leave it


async def test_a_batch_in_parts_with_repeated_targets_is_indexed(
    store_factory: StoreFactory,
) -> None:
    store = await store_factory()
    assert isinstance(store, RedisStore)
    store._write_chunk = 7
    rng = random.Random(5)
    keys = [f"k{n}" for n in range(15)]
    await store.write_many([revoke(k, NOW + 1000 + n) for n, k in enumerate(keys)])
    batch = [
        revoke(rng.choice(keys), NOW + rng.choice([10.5, 2000.25]))
        if rng.random() < 0.7
        else unrevoke(rng.choice(keys))
        for _ in range(60)
    ]
    await store.write_many(batch)
    await assert_indexed(store)


async def test_concurrent_writers_leave_the_index_equal_to_the_rows(
    store_factory: StoreFactory,
) -> None:
    writers = [await store_factory() for _ in range(3)]
    keys = [f"k{n}" for n in range(40)]

    async def churn(store: Store, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            batch = [
                revoke(k, NOW + rng.choice([60.5, 600.25])) if rng.random() < 0.6 else unrevoke(k)
                for k in rng.sample(keys, 6)
            ]
            await store.write_many(batch)
            if rng.random() < 0.1:
                await store.prune(NOW + 100)

    await asyncio.gather(*(churn(w, i) for i, w in enumerate(writers)))
    await assert_indexed(writers[0])
    await assert_snapshot_is_since(writers[0], NOW)


async def test_the_snapshot_reads_a_complete_index_not_the_rows(store: Store) -> None:
    # Proves the fast path is taken: an entry changed in the index alone shows in it.
    assert isinstance(store, RedisStore)
    await store.write(revoke("a", NOW + 100.5))
    change = await store.write(revoke("b", NOW + 200.5))
    client = _client(store)
    try:
        key = store._keys.indexed_revoked
        client.zrem(key, f"b\n{NOW + 200.5!r}")
        client.zadd(key, {"b\n12345.5": change.seq})
    finally:
        client.close()
    snapshot = await store.snapshot(0.0)
    assert sorted(zip(*snapshot.revoked, strict=True)) == [("a", NOW + 100.5), ("b", 12345.5)]


async def test_the_spans_read_with_zrange_as_with_hiredis(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With hiredis installed the spans are plain ZRANGEs (any parser reads them): the
    # same snapshot, odd keys (one with a newline: read again as JSON) included.
    monkeypatch.setattr(redis_store, "HIREDIS_AVAILABLE", True)
    monkeypatch.setattr(redis_store, "SNAPSHOT_CHUNK", 7)
    await fill(store)
    await assert_indexed(store)
    await assert_snapshot_is_since(store, NOW)


# -- a store the index was never built for, or left behind ------------------------------

UNINDEXED = Path(__file__).parent / "unindexed_lua"
"""The write and prune scripts of the Redis store before the index (copied unchanged
from commit 365096f): what an older node still running beside new ones writes."""


def _old_script(name: str, *libraries: str) -> str:
    """A store script as a revsync that keeps no index runs it."""
    texts = [(UNINDEXED / f"{lib}.lua").read_text() for lib in (*libraries, name)]
    return lua_script("\n".join(texts))


async def old_write(store: RedisStore, requests: list[ChangeRequest]) -> None:
    """Write ``requests`` as a revsync without the index does (rows, log, counter only)."""
    client = _client(store)
    k = store._keys
    try:
        script = client.register_script(_old_script("write", "rows"))
        changes = json.dumps(_flat(map(_ChangeArgs.of, requests)))
        script(
            keys=[k.counter, k.log, k.expiry, k.history], args=[k.base, repr(time.time()), changes]
        )
    finally:
        client.close()


async def old_prune(store: RedisStore, before: float) -> None:
    client = _client(store)
    k = store._keys
    try:
        script = client.register_script(_old_script("prune"))
        script(keys=[k.expiry, k.log], args=[k.base, repr(before), 1000])
    finally:
        client.close()


def drop_index(store: Store) -> None:
    """The store as a revsync without the index left it: no index keys at all."""
    assert isinstance(store, RedisStore)
    client = _client(store)
    try:
        client.delete(store._keys.index, *_sets(store).values())
    finally:
        client.close()


async def test_a_store_without_the_index_is_read_row_by_row_and_indexed(store: Store) -> None:
    assert isinstance(store, RedisStore)
    await fill(store)
    drop_index(store)
    await assert_snapshot_is_since(store, NOW)  # read row by row, building the index
    await assert_indexed(store)
    await store.write(revoke("after", NOW + 10.5))
    await assert_indexed(store)
    await assert_snapshot_is_since(store, NOW)


@pytest.mark.parametrize("built", [False, True], ids=["kept-by-writes", "built-by-a-snapshot"])
@pytest.mark.parametrize("new_row", [False, True], ids=["rewrites", "with-a-new-row"])
async def test_a_write_that_keeps_no_index_makes_the_next_snapshot_rebuild_it(
    store: Store, built: bool, new_row: bool
) -> None:
    assert isinstance(store, RedisStore)
    await fill(store)
    if built:
        drop_index(store)
        await store.snapshot(NOW)
    await assert_indexed(store)
    # An older revsync unrevokes a jti the index lists and moves another's expiry (and
    # revokes a new one): the index lists the first two wrongly (and misses the third).
    requests = [unrevoke("jti-7"), revoke("jti-8", NOW + 99_999.5)]
    await old_write(store, [*requests, revoke("old-new", NOW + 50.5)] if new_row else requests)
    assert state_of(store)["seq"] != str(await store.head())
    await assert_snapshot_is_since(store, NOW)
    await assert_indexed(store)


@pytest.mark.parametrize("built", [False, True], ids=["kept-by-writes", "built-by-a-snapshot"])
async def test_a_prune_that_keeps_no_index_makes_the_next_snapshot_rebuild_it(
    store: Store, built: bool
) -> None:
    assert isinstance(store, RedisStore)
    await store.write_many([revoke("soon", NOW + 5.5), revoke("later", NOW + 500.5)])
    if built:
        drop_index(store)
        await store.snapshot(NOW)
    await assert_indexed(store)
    await old_prune(store, NOW + 10)  # leaves "soon" listed in the index
    assert any(m.startswith("soon\n") for m in index_of(store)["revoked"])
    await assert_snapshot_is_since(store, NOW)  # "soon" is live at NOW, but pruned
    await assert_indexed(store)


async def _churn(store: Store, stop: asyncio.Event, seed: int, keys: list[str]) -> int:
    rng = random.Random(seed)
    writes = 0
    while not stop.is_set():
        batch = [
            revoke(k, NOW + rng.choice([600.5, 3600.25])) if rng.random() < 0.6 else unrevoke(k)
            for k in rng.sample(keys, 5)
        ]
        await store.write_many(batch)
        writes += 1
        await asyncio.sleep(0)
    return writes


@pytest.mark.parametrize("chunk", [3, 17])
async def test_the_index_is_built_while_writers_go_on(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(redis_store, "SNAPSHOT_CHUNK", chunk)
    keys = [f"k{n}" for n in range(60)]
    seeder = await store_factory()
    assert isinstance(seeder, RedisStore)
    await seeder.write_many([revoke(k, NOW + 1800.5) for k in keys])
    drop_index(seeder)
    writers = [await store_factory() for _ in range(2)]
    stop = asyncio.Event()
    churn = [asyncio.create_task(_churn(w, stop, i, keys)) for i, w in enumerate(writers)]
    await asyncio.sleep(0.01)
    # Two nodes start at once, both read row by row: they build one index together.
    nodes = [Replica(await store_factory(), RevocationSet(), SyncStats()) for _ in range(2)]
    await asyncio.gather(*(node.catch_up() for node in nodes))
    stop.set()
    assert all(n > 0 for n in await asyncio.gather(*churn))
    reference = Replica(Paged(seeder), RevocationSet(), SyncStats())  # type: ignore[arg-type]
    await reference.catch_up()
    for node in nodes:
        await node.catch_up()
        assert contents(node.revocations) == contents(reference.revocations)
    await assert_indexed(seeder)
    await assert_snapshot_is_since(seeder, NOW)


@pytest.mark.parametrize("old", ["write", "prune"])
async def test_what_keeps_no_index_racing_the_build_leaves_it_incomplete(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch, old: str
) -> None:
    # An older revsync rewrites (or prunes) rows the build has already listed, between
    # its chunks: the index is not marked complete, and the next snapshot builds it anew.
    monkeypatch.setattr(redis_store, "SNAPSHOT_CHUNK", 16)  # a build reads 4 rows a run
    keys = [f"k{n}" for n in range(40)]
    store = await store_factory()
    assert isinstance(store, RedisStore)
    await store.write_many(
        [revoke(k, NOW + (-100.5 if n < 8 else 1800.5)) for n, k in enumerate(keys)]
    )
    drop_index(store)
    original = store._call
    calls = 0

    async def call(what: str, script: str, keys_: list[str], args: list[Any]) -> Any:
        nonlocal calls
        if script == "snapshot":
            calls += 1
            if calls in (2, 3):  # k0..k3, then k4..k7, are listed by now
                if old == "write":
                    await old_write(store, [unrevoke(keys[calls - 2])])
                else:
                    await old_prune(store, NOW)  # k0..k7 expired
        return await original(what, script, keys_, args)

    monkeypatch.setattr(store, "_call", call)
    node = Replica(store, RevocationSet(), SyncStats())
    await node.catch_up()
    monkeypatch.setattr(store, "_call", original)
    assert calls > 3
    assert state_of(store).get("complete") != "1"  # not trusted: those writes are not in it
    reference = Replica(Paged(store), RevocationSet(), SyncStats())  # type: ignore[arg-type]
    await reference.catch_up()
    assert contents(node.revocations) == contents(reference.revocations)
    await assert_snapshot_is_since(store, NOW)  # the next one builds it, nothing racing
    await assert_indexed(store)


async def test_a_span_that_fails_fails_the_snapshot_and_leaves_no_read_running(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(store, RedisStore)
    monkeypatch.setattr(redis_store, "SNAPSHOT_CHUNK", 5)
    await store.write_many([revoke(f"j{n}", NOW + 100 + n) for n in range(40)])
    original = store._call
    spans = 0

    async def call(what: str, script: str, keys_: list[str], args: list[Any]) -> Any:
        nonlocal spans
        if script == "snapshot_index":
            spans += 1
            if spans == 3:
                raise StoreError("read on Redis store failed")
        return await original(what, script, keys_, args)

    monkeypatch.setattr(store, "_call", call)
    with pytest.raises(StoreError, match="read on Redis store failed"):
        await store.snapshot(NOW)
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}  # the span in flight: cancelled
    assert spans < 8  # stopped at the failure, not read to the end
