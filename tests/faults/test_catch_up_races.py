"""Issue 5, items 6 and 7: the two races a catch-up can lose.

- Start-up (item 6): a node starting while revocations stream in must miss none of
  them between its snapshot and its subscription (list-then-watch).  The resync
  timer is at 600 s, so only the start-up order can deliver what the snapshot missed.
- Concurrent writers (item 7): eight PostgreSQL writer nodes hold their
  transactions open for random delays after taking their seq, and abort some of them
  (a trigger in the database, ``tests.contract.slow_writes``), while every node
  catches up from the store every 50 ms.  A
  catch-up that has read up to seq N must have seen every change committed with a
  seq <= N: a slow commit behind a faster one must never be skipped.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from revsync import RevSync
from revsync.changes import Kind
from revsync.stores import StoreError
from tests.contract.slow_writes import ABORT, ABORTED, make_postgres_writes_slow
from tests.engine.conftest import NodeFactory, claims, eventually

from .conftest import ms, percentile, sized


@pytest.fixture(params=["sqlite", "postgres"])
def race_store(request: pytest.FixtureRequest) -> tuple[str, str]:
    name = "sqlite_url" if request.param == "sqlite" else "postgres_schema_url"
    return request.param, request.getfixturevalue(name)


async def test_node_starting_while_revocations_stream_misses_none(
    make_node: NodeFactory, race_store: tuple[str, str], figures: dict[str, Any]
) -> None:
    store, url = race_store
    trials = sized(100, 1_000) // (2 if store == "postgres" else 1)
    writer = await make_node(url, resync_interval=600)
    revoked: list[tuple[dict[str, Any], float]] = []
    stop = asyncio.Event()

    async def stream() -> None:
        while not stop.is_set():
            token = claims()
            await writer.revoke(token)
            revoked.append((token, time.monotonic()))
            await asyncio.sleep(0)

    streaming = asyncio.create_task(stream())
    lags: list[float] = []
    at_start: list[int] = []
    try:
        for _ in range(trials):
            await asyncio.sleep(random.uniform(0, 0.005))
            called = time.monotonic()
            before = [t for t, at in revoked if at < called]
            node = await make_node(url, resync_interval=600, heartbeat_interval=5, max_staleness=30)
            # Everything that returned before start() was called is in at once.
            assert all(node.is_revoked(t) for t in before)
            at_start.append(len(before))
            # Everything else arrives over the bus (the subscription came first).
            horizon = len(revoked)
            await eventually(lambda n=node, h=horizon: all(n.is_revoked(t) for t, _ in revoked[:h]))
            lags.append(time.monotonic() - called)
            assert node.stats.resyncs == 1  # the snapshot only: no timer, no gap repair
            await node.stop()
    finally:
        stop.set()
        await streaming
    figures.update(
        store=store,
        trials=trials,
        revocations_streamed=len(revoked),
        missed=0,
        start_to_all_refused_ms_p50=ms(percentile(lags, 0.5)),
        start_to_all_refused_ms_max=ms(max(lags)),
    )


async def test_catch_up_never_skips_a_slow_or_aborted_postgres_commit(
    make_node: NodeFactory, postgres_schema_url: str, figures: dict[str, Any]
) -> None:
    writers_count = 8
    per_writer = sized(40, 300)
    rng = random.Random(7)
    common = {"resync_interval": 0.05, "heartbeat_interval": 0.5, "max_staleness": 30}
    writers = [await make_node(postgres_schema_url, **common) for _ in range(writers_count)]
    watcher = await make_node(postgres_schema_url, **common)
    nodes = [*writers, watcher]

    # Half the transactions commit at once, a quarter within 10 ms, a quarter within
    # 20 to 150 ms; 15% abort (their jti ends in ABORT).
    delay = "(ARRAY[0, 0, random() * 0.01, 0.02 + random() * 0.13])[1 + floor(random() * 4)]"
    await make_postgres_writes_slow(postgres_schema_url, delay)

    committed: dict[int, str] = {}  # seq -> jti
    aborted: list[dict[str, Any]] = []
    skipped: list[str] = []
    done = asyncio.Event()
    checks = 0

    async def write(node: RevSync, number: int) -> None:
        for i in range(per_writer):
            mark = ABORT if rng.random() < 0.15 else ""
            token = claims(jti=f"w{number}-{i}{mark}")
            try:
                change = await node.revoke(token)
            except StoreError as exc:
                failed = str(exc)
            else:
                failed = ""
                committed[change.seq] = change.key
            # Exactly the marked writes fail, and by the trigger's abort.
            assert (ABORTED in failed) == bool(mark), failed
            if mark:
                aborted.append(token)
            await asyncio.sleep(0)

    async def watch() -> None:
        nonlocal checks
        while not done.is_set():
            for n, node in enumerate(nodes):
                upto = node.replica.store_seq
                for seq, jti in list(committed.items()):
                    checks += 1
                    if seq <= upto and not node.revocations.contains_jti(jti):
                        skipped.append(f"node {n} read up to {upto} but lacks seq {seq}")
            await asyncio.sleep(0.005)

    watching = asyncio.create_task(watch())
    await asyncio.gather(*(write(node, n) for n, node in enumerate(writers)))
    head = max(committed)
    await eventually(lambda: all(n.replica.store_seq >= head for n in nodes), within=10)
    done.set()
    await watching
    assert not skipped, skipped[:10]
    assert aborted, "the test must exercise aborted transactions"
    assert sorted(committed) == list(range(1, head + 1)), "holes or duplicates in seq"
    for node in nodes:
        assert all(node.revocations.contains_jti(j) for j in committed.values())
        assert not any(node.is_revoked(t) for t in aborted)
        assert node.revocations.jti_count == len(committed)
    row = await watcher.store.get(Kind.JTI, aborted[0]["jti"])
    assert row is None  # an aborted revoke left nothing behind
    figures.update(
        writers=writers_count,
        committed=len(committed),
        aborted=len(aborted),
        observations=checks,
        skipped=len(skipped),
        catch_ups=sum(n.stats.resyncs for n in nodes),
    )
