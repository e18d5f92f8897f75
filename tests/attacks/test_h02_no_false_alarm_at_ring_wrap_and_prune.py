"""Holds (probe): no false "store went back in time" when nothing was lost -- the
history ring turned over, the rows a node read last were pruned, the node was idle
through many writes.

docs/design.md: a node re-reads the whole store only when the store lost history.
Here node X is on a channel of its own (it hears nothing on the bus) and catches up
only when asked, while another writer fills the store:

1. X reads up to H; one batch of exactly 4096 writes ends on X's ring slot (the entry
   for H now names H + 4096: inconclusive, the anchors decide, and they are intact).
2. X's last rows read are short-lived; they expire and are pruned; another such batch.
3. X stays idle through three more batches of 4096 plus odd-sized ones.

After each step X catches up without re-reading (``store_resets`` stays 0) and holds
exactly the store's revocations.  On every store.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from revsync import RevSync
from revsync.changes import ChangeRequest, Kind
from revsync.stores import store_from_url
from revsync.stores.base import Store
from tests.engine.conftest import NodeFactory, eventually


async def catch_up(node: RevSync) -> None:
    done = node.stats.resyncs
    node.subscriber.request_catch_up()
    await eventually(lambda: node.stats.resyncs > done, within=20)


async def batch(store: Store, count: int, exp: float | None = None) -> None:
    until = exp or time.time() + 3600
    requests = [
        ChangeRequest(Kind.JTI, uuid.uuid4().hex, True, until, "alice") for _ in range(count)
    ]
    await store.write_many(requests)


async def test_ring_wrap_pruned_anchors_and_idle_nodes_raise_no_false_alarm(
    make_node: NodeFactory, store_url: str
) -> None:
    x = await make_node(store_url, resync_interval=600, channel=f"alone-{uuid.uuid4().hex}")
    writer = store_from_url(store_url)
    await writer.connect()
    try:
        await batch(writer, 3)
        await catch_up(x)
        await batch(writer, 4096)  # ends on X's ring slot
        await catch_up(x)
        assert x.stats.store_resets == 0

        await batch(writer, 2, exp=time.time() + 0.5)  # short-lived: X's next anchors
        await catch_up(x)
        await asyncio.sleep(1.0)
        assert await writer.prune(time.time()) == 2
        await batch(writer, 4096)
        await catch_up(x)
        assert x.stats.store_resets == 0

        for size in (4096, 4096, 4096, 17, 4095, 1):
            await batch(writer, size)
        await catch_up(x)
        assert x.stats.store_resets == 0

        rows = []
        last = 0
        while page := await writer.since(last, 10_000):
            rows += page
            last = page[-1].seq
        live = {r.key for r in rows if r.revoked and r.expires_at > time.time()}
        assert set(x.revocations.snapshot_jtis()) >= live
        assert x.replica.store_seq == await writer.head()
    finally:
        await writer.close()
