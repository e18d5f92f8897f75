"""Concurrent, slow and aborted writers never make a reader skip a committed change.

Eight writers, each a store object of its own (its own connection, as on eight
nodes), hold their transactions open for random delays after their seqs were handed
out, and some abort (a trigger in the database does both, see ``slow_writes``).
Meanwhile a reader pages ``since(last_seen)`` as fast as it can.  Because seqs are allocated
inside the writing transaction, every page must continue exactly where the last
one ended: a seq the reader jumps over would be a change it never sees.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from revsync.changes import Change, ChangeRequest, Kind
from revsync.stores import Store, StoreError

from .conftest import StoreFactory
from .slow_writes import ABORT, ABORTED, make_postgres_writes_slow, make_sqlite_writes_slow

WRITERS = 8
WRITES_PER_WRITER = 25


async def writer(
    store: Store, number: int, committed: list[Change], rng: random.Random, abort: bool
) -> int:
    aborted = 0
    for i in range(WRITES_PER_WRITER):
        # The last row of a transaction aborts it, after its seqs were handed out.
        mark = ABORT if abort and rng.random() < 0.2 else ""
        request = ChangeRequest(Kind.JTI, f"w{number}-{i}{mark}", True, 2e9, f"user{number}")
        try:
            if i % 5 == 4:
                first = request._replace(key=f"w{number}-{i}a")
                committed += await store.write_many([first, request])
            else:
                committed.append(await store.write(request))
        except StoreError as exc:
            failed = str(exc)
        else:
            failed = ""
        # Exactly the marked writes fail, and by the trigger's abort.
        assert (ABORTED in failed) == bool(mark), failed
        aborted += bool(mark)
        await asyncio.sleep(0)
    return aborted


async def reader(store: Store, done: asyncio.Event, seen: list[Change]) -> None:
    last = 0
    while True:
        finished = done.is_set()
        page = await store.since(last, limit=7)
        for change in page:
            assert change.seq == last + 1, f"reader jumped from seq {last} to {change.seq}"
            last = change.seq
        seen += page
        if finished and not page:
            return
        await asyncio.sleep(0)


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis"], indirect=True)
async def test_reader_never_skips_a_committed_change(
    backend: str, store_url: str, store_factory: StoreFactory
) -> None:
    rng = random.Random(1234)
    stores = [await store_factory() for _ in range(WRITERS + 1)]
    # A Redis write is one script: nothing to hold open or abort.
    if backend == "sqlite":
        make_sqlite_writes_slow(store_url)
    elif backend == "postgres":
        await make_postgres_writes_slow(store_url, "random() * 0.004")
    committed: list[Change] = []
    seen: list[Change] = []
    done = asyncio.Event()
    read = asyncio.create_task(reader(stores[-1], done, seen))
    abort = backend != "redis"
    aborted = await asyncio.gather(
        *(writer(s, n, committed, rng, abort) for n, s in enumerate(stores[:WRITERS]))
    )
    done.set()
    await read

    head = await stores[-1].head()
    assert sorted(c.seq for c in committed) == list(range(1, head + 1)), "seq holes or duplicates"
    assert sorted(seen) == sorted(committed)
    assert seen == await stores[0].since(0, limit=10_000)
    assert (await stores[0].check())["rows"] == len(committed)
    if backend != "redis":
        assert sum(aborted) > 0, "the test should exercise aborted writers"
