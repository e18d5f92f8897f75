"""Store operations cancelled at every await point leave the store whole and writable.

Issue 12, finding 2.  Quart cancels a handler's task when its client disconnects,
wherever that task is waiting.  A SQLite write cancelled at its ``BEGIN IMMEDIATE``
used to leave the transaction open on the store's connection: every later write of
that store failed ("cannot start a transaction within a transaction") and every other
process got "database is locked", for good.

Each test starts an operation as a task, lets the loop run k times, cancels it, for
k = 0, 1, 2, ... until the operation finishes before the cancel arrives.  After every
cancellation: the same store object writes again, another OS process opens the store
and writes within a bounded time, ``check()`` passes, and the cancelled operation
happened wholly or not at all.  SQLite is the store the finding is about; PostgreSQL
and Redis are held to the same loop.
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from revsync.changes import ChangeRequest, Kind
from revsync.stores import Store, StoreError, store_from_url
from tests.conftest import ROOT

from .slow_writes import ABORT, ABORTED, make_sqlite_writes_slow
from .test_registry_store import record, registry

EXP = 2_000_000_000.0
MAX_POINTS = 20_000
"""Loop iterations after which an operation that never finished fails the test."""

# Another process: for each key read from stdin, open a fresh store on the same data,
# write one revocation and close, within 10 s (SQLite's busy timeout is 5 s).
_OTHER_PROCESS = """
import asyncio, json, sys
from revsync.changes import ChangeRequest, Kind
from revsync.stores import store_from_url

async def write(url, key):
    async with asyncio.timeout(10):
        store = store_from_url(url)
        await store.connect()
        try:
            return (await store.write(ChangeRequest(Kind.JTI, key, True, 2e9))).seq
        finally:
            await store.close()

for line in sys.stdin:
    try:
        print(json.dumps({"seq": asyncio.run(write(sys.argv[1], line.strip()))}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""

OtherWriter = Callable[[str], Awaitable[int]]


@pytest.fixture
def other_process(store_url: str) -> Iterator[OtherWriter]:
    """Writes one revocation from a second OS process; fails the test if it cannot."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _OTHER_PROCESS, store_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def write(key: str) -> int:
        stdin.write(key + "\n")
        stdin.flush()
        line = await asyncio.to_thread(stdout.readline)
        assert line, "the other process died"
        result: dict[str, Any] = json.loads(line)
        assert "seq" in result, f"another process could not write: {result['error']}"
        seq: int = result["seq"]
        return seq

    try:
        yield write
    finally:
        stdin.close()
        proc.wait(timeout=20)


def jti(key: str, exp: float = EXP) -> ChangeRequest:
    return ChangeRequest(Kind.JTI, key, True, exp, "alice")


async def cancel_at_every_point(
    operation: Callable[[int], Awaitable[Any]],
    settled: Callable[[int], Awaitable[None]],
    prepare: Callable[[int], Awaitable[None]] | None = None,
) -> int:
    """Run ``operation(k)`` cancelled after k loop iterations, k = 0, 1, ..., calling
    ``settled(k)`` after each, until a run finishes first; return that k."""
    for k in range(MAX_POINTS):
        if prepare is not None:
            await prepare(k)
        task = asyncio.ensure_future(operation(k))
        for _ in range(k):
            await asyncio.sleep(0)
        finished = task.done()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            assert not finished
        await settled(k)
        if finished:
            return k
    pytest.fail(f"the operation never finished within {MAX_POINTS} loop iterations")


async def test_cancelled_write_leaves_the_store_writable(
    store: Store, other_process: OtherWriter
) -> None:
    async def settled(k: int) -> None:
        # The same store object writes again (its connection is not stuck in a transaction);
        # the cancelled write, if it still runs, is settled once this one returns.
        await store.write(jti(f"after-{k}"))
        # Another process gets the write lock within its busy timeout.
        await other_process(f"other-{k}")
        figures = await store.check()
        # One row per seq handed out: the cancelled write left its row and its counter
        # increment together, or neither.
        assert figures["rows"] == figures["head"] == figures["max_row_seq"], figures
        row = await store.get(Kind.JTI, f"cancelled-{k}")
        assert row is None or row.revoked

    points = await cancel_at_every_point(
        lambda k: store.write(jti(f"cancelled-{k}")),
        settled,
    )
    assert points > 1


async def test_cancelled_rotation_is_whole_or_absent(
    store: Store, other_process: OtherWriter
) -> None:
    reg = registry(store)

    async def prepare(k: int) -> None:
        await reg.register([record(f"current-{k}", type="refresh", family=f"f{k}")])

    async def rotate(k: int) -> Any:
        successor = record(f"next-{k}", type="refresh", family=f"f{k}")
        return await reg.register([successor], rotate=f"current-{k}")

    async def settled(k: int) -> None:
        # The same store object writes again; behind it, the cancelled rotation is settled.
        await store.write(jti(f"after-{k}"))
        current = await reg.token(f"current-{k}")
        successor = await reg.token(f"next-{k}")
        change = await store.get(Kind.ISSUED, f"next-{k}")
        outcome = (current.rotated, successor is not None, change is not None)
        assert outcome in {(True, True, True), (False, False, False)}, outcome
        # And rotates again: the compare-and-set still decides.
        again = await reg.register(
            [record(f"again-{k}", type="refresh", family=f"f{k}")], rotate=f"current-{k}"
        )
        assert (again is None) == current.rotated
        await other_process(f"other-{k}")
        figures = await store.check()
        assert figures["rows"] == figures["head"] == figures["max_row_seq"], figures

    points = await cancel_at_every_point(rotate, settled, prepare)
    assert points > 1


async def test_cancelled_family_revocation_leaves_the_store_writable(
    store: Store, other_process: OtherWriter
) -> None:
    reg = registry(store)

    async def prepare(k: int) -> None:
        await reg.register([record(f"member-{k}", type="refresh", family=f"f{k}")])

    async def settled(k: int) -> None:
        await store.write(jti(f"after-{k}"))
        await other_process(f"other-{k}")
        await store.check()
        # Marked or not, the family is in one state: marking it now refuses rotations.
        assert [r.jti for r in await reg.revoke_family(f"f{k}")] == [f"member-{k}"]
        successor = record(f"next-{k}", type="refresh", family=f"f{k}")
        assert await reg.register([successor], rotate=f"member-{k}") is None

    points = await cancel_at_every_point(lambda k: reg.revoke_family(f"f{k}"), settled, prepare)
    assert points > 1


async def test_cancelled_prune_is_whole_or_absent(
    store: Store, backend: str, other_process: OtherWriter
) -> None:
    reg = registry(store)

    async def prepare(k: int) -> None:
        await store.write_many([jti(f"old-{k}-{i}", exp=100.0) for i in range(3)])
        await reg.register([record(f"old-token-{k}", exp=100.0), record(f"live-{k}")])

    async def settled(k: int) -> None:
        await store.write(jti(f"after-{k}"))
        changes = [await store.get(Kind.JTI, f"old-{k}-{i}") is None for i in range(3)]
        changes.append(await store.get(Kind.ISSUED, f"old-token-{k}") is None)
        records = [await reg.token(f"old-token-{k}") is None]
        assert len(set(changes)) == 1, changes
        assert len(set(records)) == 1, records
        if backend != "redis":  # one transaction; Redis prunes in atomic batches per index
            assert changes[0] == records[0], (changes, records)
        assert await reg.token(f"live-{k}") is not None
        await other_process(f"other-{k}")
        await store.check()

    points = await cancel_at_every_point(lambda k: store.prune(200.0), settled, prepare)
    assert points > 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_cancelled_write_that_fails_leaves_nothing(
    store: Store, store_url: str, other_process: OtherWriter, caplog: pytest.LogCaptureFixture
) -> None:
    # The write goes on after its caller is cancelled; here it then fails, and its
    # error must neither leave a trace in the store nor be logged as never retrieved.
    make_sqlite_writes_slow(store_url, max_count=100)

    async def failing(k: int) -> None:
        with pytest.raises(StoreError, match=ABORTED):
            await store.write(jti(f"failed-{k}{ABORT}"))

    async def settled(k: int) -> None:
        await store.write(jti(f"after-{k}"))
        await other_process(f"other-{k}")
        assert await store.get(Kind.JTI, f"failed-{k}{ABORT}") is None
        figures = await store.check()
        assert figures["rows"] == figures["head"] == figures["max_row_seq"], figures
        gc.collect()  # a task whose exception nobody retrieved logs it when collected
        assert "never retrieved" not in caplog.text

    points = await cancel_at_every_point(failing, settled)
    assert points > 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_cancelled_connect_leaves_the_file_writable(
    store_url: str, other_process: OtherWriter
) -> None:
    # connect() creates the schema in a transaction of its own.
    stores: list[Store] = []

    async def prepare(k: int) -> None:
        stores.append(store_from_url(store_url))

    async def settled(k: int) -> None:
        await stores[-1].close()  # safe after a failed connect, and closes a finished one
        await other_process(f"other-{k}")
        again = store_from_url(store_url)
        await again.connect()
        try:
            await again.write(jti(f"after-{k}"))
            await again.check()
        finally:
            await again.close()

    points = await cancel_at_every_point(lambda k: stores[k].connect(), settled, prepare)
    assert points > 1
