"""The token-registry store methods, unchanged against SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from revsync.changes import Kind
from revsync.registry import TokenStore
from revsync.stores import Store
from revsync.stores._tokens import TokenRecord

from .conftest import StoreFactory

EXP = 2_000_000_000.0


def record(
    jti: str,
    *,
    identity: str = "alice",
    type: str = "access",
    family: str | None = None,
    exp: float = EXP,
    metadata: dict[str, str] | None = None,
) -> TokenRecord:
    return TokenRecord(jti, identity, type, family, 1_700_000_000.123456, exp, metadata or {})


def registry(store: Store) -> Any:
    assert isinstance(store, TokenStore)
    return store


async def test_register_writes_records_and_token_changes(store: Store) -> None:
    await store.write_many([])
    reg = registry(store)
    meta = {"device": "laptop", "user_agent": "ua/1 ünïcode", "ip": "10.0.0.1"}
    records = [record("a1", metadata=meta), record("r1", type="refresh", family="f1")]
    changes = await reg.register(records)
    assert [(c.seq, c.kind, c.key, c.revoked, c.identity) for c in changes] == [
        (1, Kind.ISSUED, "a1", False, "alice"),
        (2, Kind.ISSUED, "r1", False, "alice"),
    ]
    assert await store.since(0) == changes
    assert await store.head() == 2
    a1 = await reg.token("a1")
    assert a1 == TokenRecord(
        "a1", "alice", "access", None, 1_700_000_000.123456, EXP, meta, False, 1
    )
    assert (await reg.token("r1")).family == "f1"
    assert await reg.token("nope") is None
    assert [r.jti for r in await reg.tokens(identity="alice")] == ["a1", "r1"]
    assert [r.jti for r in await reg.tokens(family="f1")] == ["r1"]
    assert await reg.tokens(identity="bob") == []
    assert await reg.tokens(family="f2") == []
    assert await reg.register([]) == []


async def test_rotate_is_compare_and_set(store: Store) -> None:
    reg = registry(store)
    await reg.register([record("r1", type="refresh", family="f")])
    changes = await reg.register([record("r2", type="refresh", family="f")], rotate="r1")
    assert [c.seq for c in changes] == [2]
    assert (await reg.token("r1")).rotated is True
    assert (await reg.token("r2")).rotated is False
    # Already rotated, or unknown: nothing is written.
    assert await reg.register([record("r3", type="refresh", family="f")], rotate="r1") is None
    assert await reg.register([record("r4", type="refresh", family="f")], rotate="zz") is None
    assert await reg.token("r3") is None
    assert await store.head() == 2
    assert [r.jti for r in await reg.tokens(family="f")] == ["r1", "r2"]


async def test_concurrent_rotations_only_one_wins(store_factory: StoreFactory) -> None:
    stores = [registry(await store_factory()) for _ in range(4)]
    await stores[0].register([record("r0", type="refresh", family="f")])
    for round_ in range(5):
        results = await asyncio.gather(
            *(
                s.register(
                    [record(f"r{round_}-{i}", type="refresh", family="f")], rotate=f"r{round_}"
                )
                for i, s in enumerate(stores)
            )
        )
        winners = [i for i, r in enumerate(results) if r is not None]
        assert len(winners) == 1, results
        # The winner's successor is the next round's token.
        await stores[0].register(
            [record(f"r{round_ + 1}", type="refresh", family="f")], rotate=f"r{round_}-{winners[0]}"
        )


async def test_prune_deletes_expired_records(store: Store) -> None:
    reg = registry(store)
    await reg.register(
        [record("old", exp=100.0, family="f"), record("live", exp=300.0, family="f")]
    )
    await store.prune(200.0)
    assert await reg.token("old") is None
    assert [r.jti for r in await reg.tokens(identity="alice")] == ["live"]
    assert [r.jti for r in await reg.tokens(family="f")] == ["live"]
    assert [c.key for c in await store.since(0)] == ["live"]
    # Registering again after a prune still works and indexes are consistent.
    await reg.register([record("next", exp=400.0)])
    assert [r.jti for r in await reg.tokens(identity="alice")] == ["live", "next"]


async def test_revoke_family_marks_it_so_no_rotation_succeeds(store: Store) -> None:
    reg = registry(store)
    await reg.register([record("a1", family="f"), record("r1", type="refresh", family="f")])
    await reg.register(
        [record("a2", family="f"), record("r2", type="refresh", family="f")], rotate="r1"
    )
    await reg.register([record("g1", type="refresh", family="g")])
    members = await reg.revoke_family("f")
    assert [(r.jti, r.rotated) for r in members] == [
        ("a1", False),
        ("r1", True),
        ("a2", False),
        ("r2", False),
    ]
    assert members[3] == await reg.token("r2")
    head = await store.head()
    # No member that was not rotated can be rotated any more, and nothing is written.
    for jti in ("r2", "a1", "a2"):
        successor = record(f"{jti}-next", type="refresh", family="f")
        assert await reg.register([successor], rotate=jti) is None
        assert await reg.token(f"{jti}-next") is None
    assert not (await reg.token("r2")).rotated
    assert await store.head() == head
    # Marking again returns the same members; other families are untouched.
    assert await reg.revoke_family("f") == members
    assert await reg.register([record("g2", type="refresh", family="g")], rotate="g1")
    # A family no store has heard of: nothing to return, and no harm done.
    assert await reg.revoke_family("unknown") == []
    assert await reg.register([record("u1", type="refresh", family="unknown")]) is not None


async def test_family_mark_lives_as_long_as_its_longest_lived_member(store: Store) -> None:
    reg = registry(store)
    # f: its first member expires at 100, its successor at 300.
    await reg.register([record("f1", type="refresh", family="f", exp=100.0)])
    await reg.register([record("f2", type="refresh", family="f", exp=300.0)], rotate="f1")
    # g: every member expired by 200.
    await reg.register([record("g1", type="refresh", family="g", exp=100.0)])
    await reg.revoke_family("f")
    await reg.revoke_family("g")
    await store.prune(200.0)
    assert await reg.token("f1") is None
    assert [r.jti for r in await reg.tokens(family="f")] == ["f2"]
    # f's mark outlived its first member: f2 still cannot be rotated.
    assert await reg.register([record("f3", family="f")], rotate="f2") is None
    # g's mark went with its last member: a token registered in g afresh rotates.
    await reg.register([record("g2", type="refresh", family="g", exp=400.0)])
    assert await reg.register([record("g3", family="g", exp=400.0)], rotate="g2") is not None
