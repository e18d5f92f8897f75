"""The store contract: every test here runs unchanged against SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import math
import sqlite3
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revsync.changes import Change, ChangeRequest, Kind
from revsync.stores import Store, StoreError

from .conftest import StoreFactory

EXP = 2_000_000_000.0


def jti(
    key: str, *, revoked: bool = True, exp: float = EXP, identity: str | None = None
) -> ChangeRequest:
    return ChangeRequest(Kind.JTI, key, revoked, exp, identity)


def identity_change(
    key: str, cutoff: float | None, *, revoked: bool = True, exp: float = EXP
) -> ChangeRequest:
    return ChangeRequest(Kind.IDENTITY, key, revoked, exp, key, cutoff)


def state(change: Change | None) -> tuple[Any, ...] | None:
    """A change without its write time, for comparisons."""
    return None if change is None else tuple(change[:-1])


async def read_all(store: Store, page: int = 10_000) -> list[Change]:
    rows: list[Change] = []
    while batch := await store.since(rows[-1].seq if rows else 0, page):
        rows += batch
    return rows


async def test_empty_store(store: Store) -> None:
    assert await store.head() == 0
    assert await store.since(0) == []
    assert await store.get(Kind.JTI, "nope") is None
    assert await store.by_identity("nobody") == []
    assert await store.prune(math.inf) == 0
    assert await store.check() == {"rows": 0, "head": 0, "max_row_seq": 0}


async def test_write_then_get(store: Store) -> None:
    change = await store.write(jti("t1", exp=1_700_000_000.123456, identity="alice"))
    assert change.seq == 1
    assert change.kind is Kind.JTI
    assert state(change) == (1, Kind.JTI, "t1", True, 1_700_000_000.123456, "alice", None)
    assert isinstance(change.created_at, float)
    assert await store.get(Kind.JTI, "t1") == change
    assert await store.get(Kind.IDENTITY, "t1") is None
    assert await store.head() == 1


async def test_values_round_trip_exactly(store: Store) -> None:
    key = 'ü/"\\ x:{y}\t' + "z" * 300
    exp, cutoff = 1_712_345_678.000_001_2, 0.1 + 0.2
    written = await store.write(ChangeRequest(Kind.IDENTITY, key, True, exp, "idé{n}", cutoff))
    read = await store.get(Kind.IDENTITY, key)
    assert read == written
    assert read is not None
    assert (read.expires_at, read.cutoff, read.identity) == (exp, cutoff, "idé{n}")
    assert type(read.revoked) is bool
    assert await store.since(0) == [written]


async def test_since_is_ascending_and_pages(store: Store) -> None:
    written = [await store.write(jti(f"t{i}")) for i in range(23)]
    assert await store.since(0) == written
    assert await store.since(10) == written[10:]
    assert await store.since(23) == []
    assert await store.since(5, limit=4) == written[5:9]
    assert await read_all(store, page=7) == written


async def test_seqs_are_gap_free_and_increasing(store: Store) -> None:
    seqs = [(await store.write(jti(f"t{i % 5}", revoked=i % 3 != 0))).seq for i in range(30)]
    assert seqs == list(range(1, 31))
    assert await store.head() == 30
    rows = await read_all(store)
    assert [row.seq for row in rows] == sorted({row.seq for row in rows})


async def test_overwrite_moves_row_to_new_seq(store: Store) -> None:
    await store.write(jti("a"))
    await store.write(jti("b"))
    again = await store.write(jti("a"))
    assert [(row.key, row.seq) for row in await store.since(0)] == [("b", 2), ("a", 3)]
    assert await store.since(2) == [again]


async def test_unrevoke_after_revoke_wins(store: Store) -> None:
    await store.write(jti("t", exp=EXP, identity="alice"))
    tombstone = await store.write(jti("t", revoked=False, exp=EXP - 100))
    assert state(tombstone) == (2, Kind.JTI, "t", False, EXP, "alice", None)
    assert await store.get(Kind.JTI, "t") == tombstone


async def test_revoke_after_unrevoke_wins(store: Store) -> None:
    await store.write(jti("t", exp=EXP))
    await store.write(jti("t", revoked=False))
    again = await store.write(jti("t", exp=EXP - 100))
    assert state(again) == (3, Kind.JTI, "t", True, EXP - 100, None, None)
    assert await store.get(Kind.JTI, "t") == again


async def test_unrevoke_of_unknown_target_writes_tombstone(store: Store) -> None:
    change = await store.write(jti("never", revoked=False, exp=EXP))
    assert state(change) == (1, Kind.JTI, "never", False, EXP, None, None)
    assert await store.since(0) == [change]


async def test_revoke_over_revoke_keeps_later_expiry_and_cutoff(store: Store) -> None:
    await store.write(identity_change("bob", 500.0, exp=EXP))
    change = await store.write(identity_change("bob", 400.0, exp=EXP - 1))
    assert state(change) == (2, Kind.IDENTITY, "bob", True, EXP, "bob", 500.0)
    change = await store.write(identity_change("bob", 600.0, exp=EXP + 1))
    assert (change.expires_at, change.cutoff) == (EXP + 1, 600.0)
    change = await store.write(identity_change("bob", None))
    assert change.cutoff == 600.0


async def test_identity_kept_when_request_has_none(store: Store) -> None:
    await store.write(jti("t", identity="alice"))
    assert (await store.write(jti("t"))).identity == "alice"
    assert (await store.write(jti("t", revoked=False))).identity == "alice"
    moved = await store.write(jti("t", identity="carol"))
    assert moved.identity == "carol"
    assert await store.by_identity("alice") == []
    assert await store.by_identity("carol") == [moved]


async def test_write_many_numbers_consecutively(store: Store) -> None:
    await store.write(jti("first"))
    changes = await store.write_many(
        [jti("a"), identity_change("s", 1.0), jti("b"), jti("a", revoked=False)]
    )
    assert [c.seq for c in changes] == [2, 3, 4, 5]
    assert [(c.key, c.revoked) for c in changes] == [
        ("a", True),
        ("s", True),
        ("b", True),
        ("a", False),
    ]
    assert len({c.created_at for c in changes}) == 1
    assert await store.get(Kind.JTI, "a") == changes[3]
    assert [c.seq for c in await store.since(0)] == [1, 3, 4, 5]
    assert await store.head() == 5
    assert await store.write_many([]) == []
    assert await store.head() == 5


async def test_invalid_request_raises_value_error_and_writes_nothing(store: Store) -> None:
    for bad in (
        jti(""),
        jti("t", exp=math.nan),
        jti("t", exp=math.inf),
        identity_change("s", math.nan),
    ):
        with pytest.raises(ValueError, match="must be"):
            await store.write(bad)
    with pytest.raises(ValueError, match="kind"):
        await store.write(ChangeRequest("bogus", "t", True, EXP))
    with pytest.raises(ValueError, match="must be"):
        await store.write_many([jti("ok"), jti("")])
    assert await store.head() == 0


async def test_prune_drops_only_expired_rows(store: Store) -> None:
    await store.write(jti("old", exp=100.0, identity="alice"))
    await store.write(jti("old-tombstone", exp=150.0))
    await store.write(jti("old-tombstone", revoked=False))
    edge = await store.write(jti("edge", exp=200.0))
    live = await store.write(jti("live", exp=300.0, identity="alice"))
    assert await store.prune(200.0) == 2
    assert await store.since(0) == [edge, live]
    assert await store.get(Kind.JTI, "old") is None
    assert await store.by_identity("alice") == [live]
    assert await store.prune(200.0) == 0
    assert await store.head() == 5
    assert (await store.check())["rows"] == 2


async def test_prune_keeps_revocation_extended_past_before(store: Store) -> None:
    await store.write(jti("t", exp=100.0))
    extended = await store.write(jti("t", exp=1_000.0))
    assert await store.prune(500.0) == 0
    assert await store.since(0) == [extended]


async def test_prune_many(store: Store) -> None:
    await store.write_many([jti(f"t{i}", exp=float(i)) for i in range(2_500)])
    assert await store.prune(2_000.0) == 2_000
    assert [c.key for c in await store.since(0)] == [f"t{i}" for i in range(2_000, 2_500)]


async def test_by_identity(store: Store) -> None:
    a1 = await store.write(jti("a1", identity="alice"))
    await store.write(jti("b1", identity="bob"))
    cut = await store.write(ChangeRequest(Kind.IDENTITY, "alice", True, EXP, "alice", 10.0))
    a2 = await store.write(jti("a2", revoked=False, identity="alice"))
    assert await store.by_identity("alice") == [a1, cut, a2]
    assert await store.by_identity("ali") == []


async def test_check_reports_figures(store: Store) -> None:
    await store.write_many([jti("a"), jti("b"), jti("a")])
    assert await store.check() == {"rows": 2, "head": 3, "max_row_seq": 3}


async def rewind_counter(backend: str, url: str) -> None:
    """Corrupt the store behind its back: set the counter below the rows' seqs."""
    if backend == "sqlite":
        with sqlite3.connect(urlsplit(url).path[1:]) as conn:
            conn.execute("UPDATE revsync_meta SET seq = 0")
        conn.close()
    elif backend == "postgres":
        pg = await asyncpg.connect(url)
        await pg.execute("UPDATE revsync_meta SET seq = 0")
        await pg.close()
    else:
        prefix = parse_qs(urlsplit(url).query)["prefix"][0]
        client = redis.Redis.from_url(url.partition("?")[0])
        client.set(f"{{{prefix}}}:seq", 0)
        client.close()


async def test_check_detects_counter_behind_rows(
    store: Store, backend: str, store_url: str
) -> None:
    await store.write(jti("a"))
    await rewind_counter(backend, store_url)
    with pytest.raises(StoreError, match="behind"):
        await store.check()


async def test_close_then_connect_again(store: Store) -> None:
    first = await store.write(jti("before"))
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="not connected"):
        await store.head()
    await store.connect()
    await store.connect()
    assert await store.get(Kind.JTI, "before") == first
    assert (await store.write(jti("after"))).seq == 2


async def test_two_store_objects_see_each_others_writes(
    store: Store, store_factory: StoreFactory
) -> None:
    other = await store_factory()
    mine = await store.write(jti("from-a"))
    theirs = await other.write(jti("from-b"))
    assert theirs.seq == mine.seq + 1
    assert await store.since(0) == [mine, theirs]
    assert await other.since(0) == [mine, theirs]
    assert await store.get(Kind.JTI, "from-b") == theirs
    both = await store.write_many([jti("from-a", revoked=False), jti("x")])
    assert await other.since(theirs.seq) == both
    assert await other.head() == 4


async def test_url_has_no_password(store: Store) -> None:
    assert isinstance(store.url, str)
    assert store.url.split(":", 1)[0] in {"sqlite", "postgresql", "postgres", "redis", "rediss"}


# --- a property test: any sequence of writes behaves like a dict -----------------------

KEYS = ["a", "b", "ü/x", "s:1"]
IDENTITIES = [None, "alice", "bob"]
TIMES = st.sampled_from([100.0, 1_500.0, 1_500.25, 3_000.0]) | st.floats(0, 4_000, allow_nan=False)

requests = st.builds(
    ChangeRequest,
    kind=st.sampled_from(list(Kind)),
    key=st.sampled_from(KEYS),
    revoked=st.booleans(),
    expires_at=TIMES,
    identity=st.sampled_from(IDENTITIES),
    cutoff=st.none() | TIMES,
)
operations = st.lists(
    st.tuples(st.just("write"), requests)
    | st.tuples(st.just("write_many"), st.lists(requests, max_size=5))
    | st.tuples(st.just("prune"), TIMES),
    max_size=12,
)


def model_write(rows: dict[tuple[Kind, str], Any], req: ChangeRequest, seq: int) -> tuple[Any, ...]:
    """The spec, restated: one row per target, last write wins, revocations only widen."""
    old = rows.get((req.kind, req.key))
    identity = req.identity if req.identity is not None or old is None else old[5]
    if old is None or (req.revoked and not old[3]):
        expires, cutoff = req.expires_at, req.cutoff
    elif not req.revoked:
        expires, cutoff = old[4], old[6] if req.cutoff is None else req.cutoff
    else:
        expires = max(old[4], req.expires_at)
        cutoffs = [c for c in (old[6], req.cutoff) if c is not None]
        cutoff = max(cutoffs) if cutoffs else None
    row = (seq, req.kind, req.key, req.revoked, expires, identity, cutoff)
    rows[(req.kind, req.key)] = row
    return row


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
async def test_writes_behave_like_a_dict(store: Store, ops: list[tuple[str, Any]]) -> None:
    rows = {(c.kind, c.key): state(c) for c in await read_all(store)}
    seq = await store.head()
    for op, arg in ops:
        if op == "prune":
            expired = [target for target, row in rows.items() if row is not None and row[4] < arg]
            for target in expired:
                del rows[target]
            assert await store.prune(arg) == len(expired)
            continue
        batch = [arg] if op == "write" else arg
        written = [await store.write(arg)] if op == "write" else await store.write_many(arg)
        for req, change in zip(batch, written, strict=True):
            seq += 1
            assert state(change) == model_write(rows, req, seq)
    assert await store.head() == seq
    assert [state(c) for c in await read_all(store, page=3)] == sorted(rows.values())
    for kind in Kind:
        for key in KEYS:
            assert state(await store.get(kind, key)) == rows.get((kind, key))
    for identity in IDENTITIES[1:]:
        expected = sorted(row for row in rows.values() if row is not None and row[5] == identity)
        assert [state(c) for c in await store.by_identity(identity)] == expected
    assert (await store.check())["rows"] == len(rows)
