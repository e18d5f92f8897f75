"""Issue 16 attack 1: the shared SQL core (revsync/stores/_sql.py) keeps every store
promise the two separate stores kept.

- ``write_many`` (not in tests/contract/test_sqlite_cancellation.py) cancelled at every
  await point leaves its batch whole or absent, the same store object and another OS
  process able to write, and the PostgreSQL pool not short of a connection.
- Two OS processes writing one SQLite file at once hand out every seq exactly once.
- ``since()`` paged at every page size around the number of rows returns each row
  exactly once, also while rows are rewritten (moved to a new seq) between pages.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from revsync.changes import ChangeRequest, Kind
from revsync.stores import Store, store_from_url
from tests.conftest import ROOT
from tests.contract.conftest import StoreFactory
from tests.contract.test_sqlite_cancellation import (
    OtherWriter,
    cancel_at_every_point,
    other_process,
)

__all__ = ["other_process"]

EXP = 2_000_000_000.0


def jti(key: str, *, revoked: bool = True, exp: float = EXP) -> ChangeRequest:
    return ChangeRequest(Kind.JTI, key, revoked, exp, "alice")


def batch(k: int) -> list[ChangeRequest]:
    """Five changes of three targets: a revoke later undone, a revoke, an identity."""
    return [
        jti(f"b{k}-a"),
        jti(f"b{k}-b"),
        ChangeRequest(Kind.IDENTITY, f"user{k}", True, EXP, f"user{k}", cutoff=1000.0),
        jti(f"b{k}-a", revoked=False),
        jti(f"b{k}-b", exp=EXP + 1),
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"], indirect=True)
async def test_cancelled_write_many_is_whole_or_absent(
    store: Store, backend: str, other_process: OtherWriter
) -> None:
    committed = [0]

    async def settled(k: int) -> None:
        await store.write(jti(f"after-{k}"))
        await other_process(f"other-{k}")
        rows = [
            await store.get(Kind.JTI, f"b{k}-a"),
            await store.get(Kind.JTI, f"b{k}-b"),
            await store.get(Kind.IDENTITY, f"user{k}"),
        ]
        present = [row is not None for row in rows]
        assert len(set(present)) == 1, f"k={k}: half a batch: {rows}"
        if present[0]:
            a, b, ident = rows
            assert a is not None
            assert b is not None
            assert ident is not None
            # Numbered consecutively, merged in order.
            assert not a.revoked
            assert b.revoked
            assert b.expires_at == EXP + 1
            assert {ident.seq, a.seq, b.seq} == {b.seq - 2, b.seq - 1, b.seq}
            committed[0] += 1
        figures = await store.check()
        # Two rows a round (after-k, other-k), three a committed batch; five seqs a batch:
        # a cancelled batch neither left a row nor kept a seq.
        assert figures["rows"] == 2 * (k + 1) + 3 * committed[0], figures
        assert figures["head"] == 2 * (k + 1) + 5 * committed[0], figures

    points = await cancel_at_every_point(lambda k: store.write_many(batch(k)), settled)
    print(f"{backend}: write_many finished at cancel point {points}")
    assert points > 1
    # No connection was lost to a cancelled transaction: as many concurrent writes as
    # a pool holds (PostgreSQL: 10), twice over, all finish promptly.
    async with asyncio.timeout(20):
        written = await asyncio.gather(*(store.write(jti(f"burst-{i}")) for i in range(20)))
    assert len({c.seq for c in written}) == 20


_WRITER = """
import asyncio, json, sys
from revsync.changes import ChangeRequest, Kind
from revsync.stores import store_from_url

async def main(url, name, count):
    store = store_from_url(url)
    await store.connect()
    seqs = []
    try:
        for i in range(count):
            if i % 4 == 3:
                reqs = [ChangeRequest(Kind.JTI, f"{name}-{i}-{j}", True, 2e9, name)
                        for j in range(3)]
                seqs += [c.seq for c in await store.write_many(reqs)]
            else:
                req = ChangeRequest(Kind.JTI, f"{name}-{i}", True, 2e9, name)
                seqs.append((await store.write(req)).seq)
    finally:
        await store.close()
    print(json.dumps(seqs))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_two_processes_on_one_sqlite_file_share_every_seq_once(
    store: Store, store_url: str
) -> None:
    count = 120  # per process: 90 single writes and 30 batches of 3
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - started at once, waited for in threads
            [sys.executable, "-c", _WRITER, store_url, name, str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for name in ("p1", "p2", "p3")
    ]
    # This process writes too, meanwhile.
    mine = [(await store.write(jti(f"main-{i}"))).seq for i in range(50)]
    results = []
    for proc in procs:
        out, err = await asyncio.to_thread(proc.communicate, timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    seqs = sorted(s for r in results for s in r) + mine
    head = await store.head()
    assert sorted(seqs) == list(range(1, head + 1)), "a seq was lost or handed out twice"
    assert head == 3 * (90 + 30 * 3) + 50
    rows = await store.since(0, limit=100_000)
    assert [c.seq for c in rows] == list(range(1, head + 1))
    figures = await store.check()
    assert figures["rows"] == figures["head"] == head


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"], indirect=True)
async def test_since_pages_return_every_row_once(store: Store) -> None:
    total = 25
    await store.write_many([jti(f"r{i}") for i in range(total)])
    for limit in (1, 2, 3, 4, 5, 12, 24, 25, 26, 100):
        last, seen = 0, []
        while page := await store.since(last, limit):
            assert len(page) <= limit
            seen += page
            last = page[-1].seq
        assert [c.seq for c in seen] == list(range(1, total + 1)), limit
    # Exactly at the end, and past it.
    assert await store.since(total, 5) == []
    assert await store.since(total + 10, 5) == []
    assert [c.seq for c in await store.since(total - 1, 1)] == [total]


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"], indirect=True)
async def test_since_pages_while_rows_move(store: Store, store_factory: StoreFactory) -> None:
    # A rewritten row moves to a new seq: a reader paging from its cursor sees the
    # target's latest state exactly once more, and never misses a target.
    other = await store_factory()
    total = 30
    await store.write_many([jti(f"m{i}") for i in range(total)])
    last, seen = 0, []
    moved = 0
    while page := await store.since(last, 4):
        seen += page
        last = page[-1].seq
        if moved < total:
            # Rewrite a row already read and one not yet read.
            await other.write(jti(f"m{moved}", revoked=False))
            moved += 1
    assert [c.seq for c in seen] == sorted({c.seq for c in seen}), "a seq seen twice"
    latest = {c.key: c for c in seen}
    assert set(latest) == {f"m{i}" for i in range(total)}
    assert all(not c.revoked for c in latest.values()), "a rewrite was missed"
    assert last == await store.head()


async def test_store_from_url_does_not_connect(sqlite_url: str) -> None:
    # Start-up order: building a store is pure; connect() opens it.
    store = store_from_url(sqlite_url)
    assert not (ROOT / sqlite_url.removeprefix("sqlite:///")).exists()
    await store.close()
