"""Twelve nodes on one Redis: start-up and propagation still fast.

The nodes run in this test's process, on one event loop, so every delivery to 12
subscribers is serialised through one loop: the figures are an upper bound for 12
separate processes.  Printed with pytest -s.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from revsync import RevSync
from tests.engine.conftest import claims, make_app

NODES = 12
REVOCATIONS = 200
PRELOADED = 10_000


async def test_twelve_nodes_propagation_and_startup(redis_server: Any, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'revsync.db'}"
    channel = f"revsync-many-{uuid.uuid4().hex[:8]}"

    def node() -> RevSync:
        return RevSync(
            make_app(),
            redis_url=redis_server.url,
            store_url=store_url,
            channel=channel,
            startup_timeout=30,
        )

    seed = node()
    await seed.start()
    await seed.revoke_many([claims() for _ in range(PRELOADED)])
    nodes = [seed]
    try:
        started = time.monotonic()
        for _ in range(NODES - 1):
            nodes.append(node())
        for n in nodes[1:]:
            await n.start()
        startup = time.monotonic() - started
        assert all(len(n.revocations) >= PRELOADED for n in nodes)

        delays: list[float] = []
        for i in range(REVOCATIONS):
            token = claims()
            origin = nodes[i % NODES]
            sent = time.perf_counter()
            await origin.revoke(token)
            while not all(n.is_revoked(token) for n in nodes):
                await _yield()
            delays.append(time.perf_counter() - sent)
        delays.sort()
        p50 = statistics.median(delays) * 1000
        p99 = delays[int(len(delays) * 0.99) - 1] * 1000
        print(
            f"\n[{NODES} nodes, one Redis] {NODES - 1} nodes ready with {PRELOADED} "
            f"revocations in {startup:.2f}s ({startup / (NODES - 1):.3f}s each, one loop); "
            f"propagation to all {NODES}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
            f"max {delays[-1] * 1000:.2f} ms over {REVOCATIONS} revocations"
        )
        assert p99 < 100, "propagation to 12 nodes should stay well under the resync interval"
    finally:
        for n in nodes:
            await n.stop()


async def _yield() -> None:
    await asyncio.sleep(0)
