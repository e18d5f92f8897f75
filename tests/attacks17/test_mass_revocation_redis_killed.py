"""A mass revocation in parts whose Redis (store and bus, a server of the test's own,
with an fsync'd append-only file) is killed mid-batch and started again (docs/design.md,
"Mass revocations", "A part that fails"): the caller gets an error, every part it says
is written is in the store, and once Redis is back every node holds exactly the
store's live rows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from revsync import PartialWriteError, RevSync, StoreError
from revsync._replica import Replica
from revsync._revocation_set import RevocationSet
from revsync._stats import SyncStats
from revsync.stores.redis import RedisStore
from services.processes import RedisServer, free_port
from tests.engine.conftest import NodeFactory, eventually


def _equal(node: RevSync, expected: dict[str, float]) -> bool:
    return node.revocations.snapshot_jtis() == expected and bool(node.status()["ready"])


async def test_a_batch_cut_by_a_redis_crash_ends_equal_everywhere(
    make_node: NodeFactory, tmp_path: Path
) -> None:
    server = RedisServer(free_port(), tmp_path, ["--appendonly", "yes", "--appendfsync", "always"])
    server.start()
    try:
        url = server.url
        options = {"redis_url": url, "resync_interval": 1, "startup_timeout": 10}
        a = await make_node(url, store=RedisStore(url, prefix="m", write_chunk=100), **options)
        b = await make_node(f"{url}?prefix=m", **options)
        tokens = [(f"t{n}", 2e9) for n in range(20_000)]
        batch = asyncio.create_task(a.revoke_many(tokens))
        await eventually(lambda: a.revocations.jti_count >= 1_000, within=20)
        server.kill()
        with pytest.raises(StoreError) as raised:
            await batch
        written = raised.value.written if isinstance(raised.value, PartialWriteError) else []
        assert written, "parts were applied, so some were durable"
        await asyncio.to_thread(server.start)
        store = RedisStore(url, prefix="m")
        await store.connect()
        try:
            reference = Replica(store, RevocationSet(), SyncStats())
            await reference.catch_up()
            expected = reference.revocations.snapshot_jtis()
        finally:
            await store.close()
        assert {c.key for c in written} <= expected.keys()
        assert len(expected) < len(tokens)
        await eventually(lambda: all(_equal(n, expected) for n in (a, b)), within=30)
    finally:
        server.kill()
