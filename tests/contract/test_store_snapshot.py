"""The start-up snapshot (``SnapshotReader.snapshot``) against the paged read it replaces.

Every store, real: revocations with odd keys and exact fractional expiries, re-revoked
and unrevoked targets (tombstones), identity cut-offs (live, expired, lifted),
registrations, expired rows.  A node that loads the snapshot then pages on must hold
exactly what a node paging ``since`` from 0 holds; and the snapshot itself holds the
live rows that ``since(0)`` returns, split by kind, with the same floats.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from revsync._replica import Replica
from revsync._revocation_set import RevocationSet
from revsync._stats import SyncStats
from revsync.changes import ChangeRequest, Kind
from revsync.registry import TokenStore
from revsync.stores import Store, base
from revsync.stores import redis as redis_store
from revsync.stores._tokens import TokenRecord
from revsync.stores.base import Snapshot, SnapshotReader

NOW = time.time()


@pytest.fixture(autouse=True)
def _clock_starts_with_the_test() -> None:
    # Expiries here are relative to NOW and some are minutes away; the whole suite
    # runs longer than that, so each test takes its own NOW, not the import's.
    global NOW
    NOW = time.time()


ODD_KEYS = ['with "quotes"', "back\\slash", "comma,and;semi", "new\nline", "ünï ☃ 𝄞", "a" * 200]


class Paged:
    """The store without its snapshot: a node reading it pages ``since`` from 0."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name == "snapshot":
            raise AttributeError(name)
        return getattr(self._store, name)


def revoke(key: str, expires_at: float, kind: Kind = Kind.JTI, **extra: Any) -> ChangeRequest:
    return ChangeRequest(kind, key, True, expires_at, **extra)


async def fill(store: Store) -> None:
    """Every kind of row a store holds, some of them expired."""
    live = [revoke(f"jti-{n}", NOW + 3600 + n * 0.123456789, identity="u1") for n in range(40)]
    await store.write_many(live)
    await store.write_many([revoke(k, NOW + 7200.000001) for k in ODD_KEYS])
    await store.write(revoke("expired", NOW - 120))
    await store.write(revoke("jti-3", NOW + 90_000.5))  # re-revoked: the later expiry
    await store.write(ChangeRequest(Kind.JTI, "jti-5", False, 0.0))  # a tombstone
    await store.write(revoke("bob", NOW + 5000, Kind.IDENTITY, identity="bob", cutoff=NOW - 1))
    await store.write(revoke("old", NOW - 60, Kind.IDENTITY, identity="old", cutoff=NOW - 900))
    await store.write(revoke("eve", NOW + 5000, Kind.IDENTITY, identity="eve", cutoff=NOW - 5))
    await store.write(ChangeRequest(Kind.IDENTITY, "eve", False, 0.0, identity="eve"))
    registry = store
    assert isinstance(registry, TokenStore)
    await registry.register(
        [
            TokenRecord("reg-live", "u1", "access", None, NOW, NOW + 600.25, {}),
            TokenRecord("reg-gone", "u1", "access", None, NOW - 900, NOW - 300, {}),
        ]
    )
    await store.write(revoke("last", NOW + 100.75))


def contents(revocations: RevocationSet) -> tuple[Any, ...]:
    return (
        revocations.snapshot_jtis(),
        revocations.snapshot_identities(),
        revocations.snapshot_allowed(),
    )


async def test_the_snapshot_holds_the_live_rows_of_since(store: Store) -> None:
    await fill(store)
    assert isinstance(store, SnapshotReader)
    snapshot = await store.snapshot(NOW)
    rows = await store.since(0, 1000)
    live = [r for r in rows if r.expires_at >= NOW]
    jtis = [(r.key, r.expires_at) for r in live if r.kind is Kind.JTI and r.revoked]
    registered = [(r.key, r.expires_at) for r in live if r.kind is Kind.ISSUED and not r.revoked]
    others = [r for r in live if (r.key, r.expires_at) not in jtis + registered]
    assert sorted(zip(*snapshot.revoked, strict=True)) == sorted(jtis)
    assert sorted(zip(*snapshot.registered, strict=True)) == sorted(registered)
    assert sorted(snapshot.others) == sorted(others)
    assert {r.key for r in others} == {"jti-5", "bob", "eve"}  # a tombstone, a cut-off, a lift
    assert snapshot.seq == await store.head() == rows[-1].seq
    assert snapshot.anchors == rows[-2:]
    assert snapshot.rows == len(live)


async def test_an_empty_store_has_an_empty_snapshot(store: Store) -> None:
    assert isinstance(store, SnapshotReader)
    assert await store.snapshot(NOW) == Snapshot(0, ([], []), ([], []), [], [])


@pytest.mark.parametrize("chunk", [1, 3])
async def test_a_node_loading_the_snapshot_holds_what_paging_gives(
    store: Store, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    # Tiny spans and chunks: the snapshot is read in many pieces, as a large store is.
    monkeypatch.setattr(base, "SNAPSHOT_SPAN", chunk)
    monkeypatch.setattr(redis_store, "SNAPSHOT_CHUNK", chunk)
    await fill(store)
    paged = Replica(Paged(store), RevocationSet(), SyncStats())  # type: ignore[arg-type]
    bulk = Replica(store, RevocationSet(), SyncStats())
    assert await paged.catch_up() > 0
    await bulk.catch_up()
    assert bulk.revocations.pending > 0  # loaded in bulk, filed in buckets later
    assert paged.revocations.pending == 0
    assert contents(bulk.revocations) == contents(paged.revocations)
    assert bulk.store_seq == paged.store_seq == await store.head()
    assert bulk.revocations.expires_at("jti-3") == NOW + 90_000.5
    assert not bulk.revocations.contains_jti("jti-5")
    assert not bulk.revocations.contains_jti("expired")
    assert bulk.revocations.cutoff("bob") == NOW - 1
    assert bulk.revocations.cutoff("eve") is None
    assert bulk.revocations.cutoff("old") is None
    assert bulk.revocations.is_allowed("reg-live")
    assert not bulk.revocations.is_allowed("reg-gone")
    for key in ODD_KEYS:
        assert bulk.revocations.is_revoked(key, None, 0)

    # Changes after the snapshot reach both alike; the bulk-loaded entries expire alike.
    await store.write(ChangeRequest(Kind.JTI, "jti-7", False, 0.0))
    await store.write(revoke("after", NOW + 50))
    await paged.catch_up()
    await bulk.catch_up()
    assert contents(bulk.revocations) == contents(paged.revocations)
    later = NOW + 3600 + 20 * 0.123456789
    assert bulk.revocations.sweep(later) == paged.revocations.sweep(later) > 0
    assert contents(bulk.revocations) == contents(paged.revocations)


async def test_a_re_read_uses_the_snapshot_too(store: Store) -> None:
    await fill(store)
    replica = Replica(store, RevocationSet(), SyncStats())
    await replica.catch_up()
    before = contents(replica.revocations)
    await store.new_epoch()  # every node re-reads the whole store
    await store.write(revoke("after-epoch", NOW + 500))
    await replica.catch_up()
    assert replica.stats.store_resets == 1
    jtis, identities, allowed = before
    assert contents(replica.revocations) == (
        {**jtis, "after-epoch": NOW + 500},
        identities,
        allowed,
    )
