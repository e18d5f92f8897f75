"""``write_many``'s insert-first path: every target is inserted as if the store had no row
for it, and only the targets it had are read and merged.  The rows left behind must be
exactly those of merging every request over what the store held (``_common.apply_all``,
the rule of docs/design.md), numbered without a gap, recorded in the history ring; a
failure part-way writes nothing (SQL) or only whole, numbered parts (Redis).
"""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revsync.changes import Change, ChangeRequest, Kind
from revsync.stores import Store, StoreError, store_from_url
from revsync.stores._common import HISTORY_SLOTS, apply_all, check_request
from revsync.stores.base import PartialWriteError

EXP = 2_000_000_000.0


def jti(key: str, *, revoked: bool = True, exp: float = EXP, identity: str | None = None) -> Any:
    return ChangeRequest(Kind.JTI, key, revoked, exp, identity)


def cut(key: str, cutoff: float | None, *, revoked: bool = True, exp: float = EXP) -> Any:
    return ChangeRequest(Kind.IDENTITY, key, revoked, exp, key, cutoff)


def state(change: Change | None) -> tuple[Any, ...] | None:
    """A change without its write time."""
    return None if change is None else tuple(change[:-1])


async def read_all(store: Store) -> list[Change]:
    rows: list[Change] = []
    while page := await store.since(rows[-1].seq if rows else 0, 1000):
        rows += page
    return rows


SEED = [
    jti("revoked-late", exp=EXP + 500, identity="alice"),
    jti("revoked-early", exp=EXP - 500, identity="alice"),
    jti("tombstone", exp=EXP - 100),
    jti("tombstone", revoked=False),
    jti("moves", identity="alice"),
    jti("keeps-identity", identity="bob"),
    cut("carol", 1_000.0),
    cut("dave", 5_000.0),
    cut("erin", 2_000.0),
    cut("erin", None, revoked=False),
    jti("carol"),  # the same key as an identity, another kind
]
"""What the store holds before the batch: revocations, tombstones, cut-offs."""

BATCH = [
    jti("new-0"),
    jti("revoked-late", exp=EXP),  # the later expiry stays
    jti("revoked-early", exp=EXP),  # the later expiry wins
    jti("tombstone", exp=EXP - 900),  # a revoke over a tombstone takes its own values
    jti("moves", identity="bob"),  # moves to bob's list
    jti("keeps-identity"),  # no identity given: keeps bob
    jti("new-1", identity="alice"),
    cut("carol", 500.0),  # the later cut-off stays
    cut("dave", 9_000.0),  # the later cut-off wins
    cut("erin", 3_000.0),  # over a lifted cut-off
    jti("carol", revoked=False),  # unrevoke: keeps its expiry
    jti("new-0", exp=EXP + 7),  # twice in the batch: merged over its first change
    jti("new-2", revoked=False),  # a tombstone of a target never revoked
    cut("frank", 4_000.0),
    cut("dave", None, revoked=False),  # lifted: keeps the cut-off and the expiry
    jti("revoked-late", revoked=False, identity="zoe"),
    *(jti(f"bulk-{n}", exp=EXP + n) for n in range(40)),
]


def expected(
    before: list[Change], requests: list[ChangeRequest], first: int, now: float
) -> list[Change]:
    """What the code before insert-first left: every request merged over what was there."""
    held = {(row.kind, row.key): row for row in before}
    changes, _ = apply_all(held, [check_request(r) for r in requests], first, now)
    return changes


def final_rows(before: list[Change], changes: list[Change]) -> list[tuple[Any, ...] | None]:
    rows = {(row.kind, row.key): row for row in before}
    rows.update({(change.kind, change.key): change for change in changes})
    return sorted(state(row) for row in rows.values())


async def test_conflicts_merge_exactly_as_merging_every_request(store: Store) -> None:
    await store.write_many(SEED[:5])
    for request in SEED[5:]:
        await store.write(request)
    before = await read_all(store)
    head = await store.head()
    changes = await store.write_many(BATCH)
    assert [state(c) for c in changes] == [
        state(c) for c in expected(before, BATCH, head + 1, changes[0].created_at)
    ]
    assert [state(row) for row in await read_all(store)] == final_rows(before, changes)
    for change in changes:
        assert await store.get(change.kind, change.key) == next(
            c for c in reversed(changes) if (c.kind, c.key) == (change.kind, change.key)
        )
    assert [c.key for c in await store.by_identity("bob")] == ["moves", "keeps-identity"]
    assert "moves" not in [c.key for c in await store.by_identity("alice")]
    assert [c.key for c in await store.by_identity("zoe")] == ["revoked-late"]


async def test_a_batch_is_numbered_without_a_gap_and_recorded_in_the_ring(store: Store) -> None:
    await store.write_many(SEED)
    head = await store.head()
    changes = await store.write_many(BATCH)
    assert [c.seq for c in changes] == list(range(head + 1, head + 1 + len(BATCH)))
    assert await store.head() == changes[-1].seq
    figures = await store.check()
    assert figures["head"] == figures["max_row_seq"] == changes[-1].seq
    # One write, one entry: its range, filed in the slot of its last seq.
    assert await store.history(changes[-1].seq) == (
        changes[0].seq,
        changes[-1].seq,
        changes[-1].created_at,
    )
    assert (await store.position()).stamp == changes[-1].created_at
    after = await store.write(jti("after"))
    assert after.seq == changes[-1].seq + 1


async def test_a_batch_of_new_targets_only_and_of_conflicts_only(store: Store) -> None:
    fresh = [jti(f"f{n}", exp=EXP + n, identity="alice") for n in range(300)]
    written = await store.write_many(fresh)
    assert [state(c) for c in written] == [
        (n + 1, Kind.JTI, f"f{n}", True, EXP + n, "alice", None) for n in range(300)
    ]
    again = [jti(f"f{n}", exp=EXP + 150) for n in range(300)]
    rewritten = await store.write_many(again)
    assert [state(c) for c in rewritten] == [
        (301 + n, Kind.JTI, f"f{n}", True, max(EXP + n, EXP + 150), "alice", None)
        for n in range(300)
    ]
    assert [state(row) for row in await read_all(store)] == [state(c) for c in rewritten]
    assert (await store.check())["rows"] == 300


# -- any batch over any store: a property ----------------------------------------------

KEYS = ["a", "b", "c", "ü/x"]
TIMES = st.sampled_from([100.0, 1_500.0, 3_000.0]) | st.floats(0, 4_000, allow_nan=False)
requests = st.builds(
    ChangeRequest,
    kind=st.sampled_from([Kind.JTI, Kind.IDENTITY]),
    key=st.sampled_from(KEYS),
    revoked=st.booleans(),
    expires_at=TIMES,
    identity=st.sampled_from([None, "alice", "bob"]),
    cutoff=st.none() | TIMES,
)


async def _same_as_merging_everything(store: Store, batch: list[ChangeRequest]) -> None:
    before = await read_all(store)
    head = await store.head()
    changes = await store.write_many(batch)
    assert [state(c) for c in changes] == [
        state(c) for c in expected(before, batch, head + 1, changes[0].created_at)
    ]
    assert [state(row) for row in await read_all(store)] == final_rows(before, changes)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(requests, min_size=1, max_size=9), min_size=1, max_size=4))
async def test_any_batch_merges_as_merging_every_request(
    store: Store, batches: list[list[ChangeRequest]]
) -> None:
    for batch in batches:
        await _same_as_merging_everything(store, batch)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(requests, min_size=1, max_size=13), min_size=1, max_size=3))
async def test_any_batch_in_redis_parts_merges_as_merging_every_request(
    parted: Any, batches: list[list[ChangeRequest]]
) -> None:
    store, _ = parted
    for batch in batches:
        await _same_as_merging_everything(store, batch)


# -- Redis: a batch in parts ---------------------------------------------------------------


@pytest.fixture
async def parted(request: pytest.FixtureRequest) -> Any:
    """A Redis store of the test's own that writes batches four changes at a time."""
    from .conftest import backend_url

    url = backend_url(request, "redis")
    store = store_from_url(url, write_chunk=4)
    await store.connect()
    yield store, url
    await store.close()


async def test_redis_parts_merge_exactly_and_each_is_in_the_ring(parted: Any) -> None:
    store, _ = parted
    await store.write_many(SEED)
    before = await read_all(store)
    head = await store.head()
    committed: list[list[Change]] = []

    async def on_commit(part: list[Change]) -> None:
        committed.append(part)
        # Each part is durable, whole, when it is announced: a reader sees it.
        assert state(await store.get(part[-1].kind, part[-1].key)) == state(part[-1])

    changes = await store.write_many(BATCH, on_commit=on_commit)
    assert [c for part in committed for c in part] == changes
    assert [len(part) for part in committed] == [
        len(BATCH[start : start + 4]) for start in range(0, len(BATCH), 4)
    ]
    assert [c.seq for c in changes] == list(range(head + 1, head + 1 + len(BATCH)))
    # A target written in two parts (new-0) is merged over the row of the first.
    assert [state(c) for c in changes] == [
        state(c) for c in expected(before, BATCH, head + 1, changes[0].created_at)
    ]
    assert [state(row) for row in await read_all(store)] == final_rows(before, changes)
    for part in committed:
        assert len({c.created_at for c in part}) == 1
        assert await store.history(part[-1].seq) == (
            part[0].seq,
            part[-1].seq,
            part[-1].created_at,
        )
    await store.check()


def _poison(url: str, key: str) -> None:
    """Give a target's row key another type, so any script that reads it fails."""
    prefix = parse_qs(urlsplit(url).query)["prefix"][0]
    client = redis.Redis.from_url(url.partition("?")[0])
    try:
        client.set(f"{{{prefix}}}:row:jti:{key}", "not a hash")
    finally:
        client.close()


async def test_a_failed_redis_part_keeps_the_parts_before_whole_and_raises(parted: Any) -> None:
    store, url = parted
    seed = await store.write_many([jti("old", exp=EXP - 1)])
    _poison(url, "poison")
    batch = [jti(f"p{n}") for n in range(6)] + [jti("old"), jti("poison"), jti("p9")]
    batch += [jti(f"q{n}") for n in range(5)]
    # Parts: p0-p3 | p4 p5 old poison | p9 q0-q2 | q3 q4: the second fails in its reads.
    with pytest.raises(PartialWriteError) as raised:
        await store.write_many(batch)
    written = raised.value.written
    assert [c.key for c in written] == ["p0", "p1", "p2", "p3"]
    assert [c.seq for c in written] == [seed[0].seq + n for n in range(1, 5)]
    assert isinstance(raised.value.__cause__, StoreError)
    assert "4 of the 14 changes were written" in str(raised.value)
    rows = await read_all(store)
    assert [(c.key, c.seq) for c in rows] == [("old", 1)] + [(c.key, c.seq) for c in written]
    assert await store.head() == written[-1].seq  # the failed part kept no seq
    assert await store.history(written[-1].seq) == (
        written[0].seq,
        written[-1].seq,
        written[-1].created_at,
    )
    assert (await store.check())["rows"] == 5
    later = await store.write(jti("later"))
    assert later.seq == written[-1].seq + 1


async def test_a_redis_batch_whose_first_part_fails_writes_nothing(parted: Any) -> None:
    store, url = parted
    _poison(url, "poison")
    with pytest.raises(StoreError) as raised:
        await store.write_many([jti("a"), jti("poison"), *(jti(f"b{n}") for n in range(5))])
    assert not isinstance(raised.value, PartialWriteError)
    assert await store.head() == 0
    assert await read_all(store) == []


# -- SQL: one transaction, whatever fails inside it ----------------------------------------


_SQLITE_TRIGGER = """
CREATE TRIGGER poison BEFORE INSERT ON revsync_changes
WHEN NEW.key = 'poison' OR NEW.identity = 'poisoned'
BEGIN SELECT RAISE(ABORT, 'poisoned row'); END
"""
_PG_TRIGGER = """
CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION 'poisoned row'; END $$;
CREATE TRIGGER poison BEFORE INSERT OR UPDATE ON revsync_changes FOR EACH ROW
WHEN (NEW.key = 'poison' OR NEW.identity = 'poisoned') EXECUTE FUNCTION poison();
"""


async def _add_trigger(backend: str, url: str) -> None:
    """Make the database itself refuse some rows: the key 'poison' (a new target, refused
    while inserting) and identity 'poisoned' (a merged row, refused while merging)."""
    if backend == "sqlite":
        conn = sqlite3.connect(urlsplit(url).path[1:])
        try:
            conn.execute(_SQLITE_TRIGGER)
            conn.commit()
        finally:
            conn.close()
    else:
        pg = await asyncpg.connect(url.partition("?")[0])
        try:
            schema = parse_qs(urlsplit(url).query)["search_path"][0]
            await pg.execute(f'SET search_path = "{schema}"; {_PG_TRIGGER}')
        finally:
            await pg.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
@pytest.mark.parametrize("poison", ["insert", "merge"])
async def test_a_sql_batch_that_fails_part_way_leaves_nothing(
    store: Store, store_url: str, backend: str, poison: str
) -> None:
    seed = await store.write_many([*SEED, jti("merged", identity="poisoned")])
    await _add_trigger(backend, store_url)
    before = await read_all(store)
    position = await store.position()
    ring = await store.history(position.head)
    # Rows before and after the poisoned one are new targets and conflicts alike; the
    # merged row of "merged" keeps its identity 'poisoned' (the request names none).
    poisoned = jti("poison") if poison == "insert" else jti("merged")
    batch = [*BATCH[:20], poisoned, *BATCH[20:], *(jti(f"tail-{n}") for n in range(200))]
    with pytest.raises(StoreError, match="poisoned row") as raised:
        await store.write_many(batch)
    assert not isinstance(raised.value, PartialWriteError)
    assert await read_all(store) == before
    assert await store.position() == position
    assert await store.history(position.head) == ring
    assert (await store.check())["head"] == seed[-1].seq
    # The seqs the failed batch took are handed out again: no gap.
    later = await store.write(jti("later"))
    assert later.seq == seed[-1].seq + 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
async def test_sql_parts_are_the_whole_batch(store: Store) -> None:
    """A SQL store commits a batch whole: ``on_commit`` hears once, with all of it."""
    heard: list[list[Change]] = []

    async def on_commit(part: list[Change]) -> None:
        heard.append(part)

    changes = await store.write_many([jti(f"k{n}") for n in range(5000)], on_commit=on_commit)
    assert heard == [changes]
    assert await store.history(changes[-1].seq) == (1, 5000, changes[-1].created_at)


def test_write_chunk_must_be_positive() -> None:
    with pytest.raises(ValueError, match="write_chunk"):
        store_from_url(f"redis://127.0.0.1:6379/0?prefix={uuid.uuid4().hex}", write_chunk=0)


def test_the_redis_default_part_stays_below_the_history_ring() -> None:
    """A part longer than the ring would file one write over the slots of others."""
    from revsync.stores.redis import WRITE_CHUNK

    assert 1_000 <= WRITE_CHUNK < HISTORY_SLOTS
