"""Failover with real processes: revoke continuously from one node while the Redis
master (Sentinel) or the channel's shard primary (Cluster) is killed with kill -9,
then every node must refuse every token whose revoke() returned.  The time from the
kill until that holds is measured and printed (pytest -s shows it)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from revsync import RevSync
from tests.engine.conftest import claims, make_app
from tests.scale.conftest import ClusterSetup, SentinelSetup

NodeFactory = Callable[..., Awaitable[RevSync]]
NODES = 3


@pytest.fixture
async def start_node() -> AsyncIterator[NodeFactory]:
    nodes: list[RevSync] = []

    async def factory(redis_url: str, store_url: str, **settings: Any) -> RevSync:
        settings.setdefault("channel", f"revsync-scale-{uuid.uuid4().hex[:8]}")
        node = RevSync(
            make_app(),
            redis_url=redis_url,
            store_url=store_url,
            heartbeat_interval=0.2,
            max_staleness=30,
            resync_interval=2,
            startup_timeout=20,
            **settings,
        )
        nodes.append(node)
        await node.start()
        return node

    yield factory
    for node in nodes:
        await node.stop()


class Writer:
    """Revokes fresh tokens from one node in a loop; remembers those that returned."""

    def __init__(self, node: RevSync) -> None:
        self.node = node
        self.revoked: list[dict[str, Any]] = []
        self.failed = 0
        self.last_failure: float | None = None
        self.first_success_after: dict[float, float] = {}
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            token = claims()
            try:
                await self.node.revoke(token)
            except Exception:
                self.failed += 1
                self.last_failure = time.monotonic()
                await asyncio.sleep(0.02)
                continue
            self.revoked.append(token)
            await asyncio.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()


async def _all_refuse(nodes: list[RevSync], tokens: list[dict[str, Any]], within: float) -> float:
    started = time.monotonic()
    while True:
        missing = sum(not node.is_revoked(t) for node in nodes for t in tokens)
        if not missing:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            pytest.fail(f"{missing} (node, token) pairs still accepted after {within}s")
        await asyncio.sleep(0.01)


async def _failover_run(
    nodes: list[RevSync], kill: Callable[[], None], recovered: Callable[[], bool], label: str
) -> None:
    writer = Writer(nodes[0])
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0.5)
    before = len(writer.revoked)
    assert before > 10, "the writer should be revoking before the kill"
    killed_at = time.monotonic()
    kill()
    # Keep revoking through the failover until writes succeed again for a while.
    while not recovered() or len(writer.revoked) < before + 20:
        if time.monotonic() - killed_at > 60:
            pytest.fail(f"{label}: writes did not resume within 60s")
        await asyncio.sleep(0.05)
    writes_back = time.monotonic() - killed_at
    await asyncio.sleep(0.5)
    writer.stop()
    await task
    await _all_refuse(nodes, writer.revoked, within=30)
    recovery = time.monotonic() - killed_at
    # A token revoked now reaches every node over the bus again, within milliseconds.
    fresh = claims()
    await nodes[0].revoke(fresh)
    propagation = await _all_refuse(nodes, [fresh], within=5)
    print(
        f"\n[{label}] revoked {len(writer.revoked)} tokens ({writer.failed} revokes "
        f"failed during the failover); writes back {writes_back:.2f}s after kill -9; "
        f"every node refused every revoked token {recovery:.2f}s after the kill; "
        f"then propagation of a new revocation {propagation * 1000:.1f} ms"
    )


@pytest.mark.parametrize("store", ["redis-sentinel", "sqlite"])
async def test_sentinel_failover_loses_no_revocation(
    sentinel_setup: SentinelSetup, start_node: NodeFactory, store: str, tmp_path: Any
) -> None:
    setup = sentinel_setup
    prefix = f"scale-{uuid.uuid4().hex[:6]}"
    store_url = (
        setup.url(f"?prefix={prefix}&min_replicas=1")
        if store == "redis-sentinel"
        else f"sqlite:///{tmp_path / 'revsync.db'}"
    )
    channel = f"revsync-scale-{uuid.uuid4().hex[:8]}"
    nodes = [await start_node(setup.url(), store_url, channel=channel) for _ in range(NODES)]
    old_master = setup.master.port
    restarted = False

    def recovered() -> bool:
        # After the promotion, bring the old master back (as a process manager
        # would); Sentinel makes it a replica of the new master, so WAIT 1 succeeds.
        nonlocal restarted
        try:
            promoted = setup.master_port() != old_master
        except Exception:
            return False
        if promoted and not restarted:
            setup.master.start()
            restarted = True
        return promoted

    await _failover_run(nodes, setup.master.kill, recovered, f"sentinel/{store}")
    assert all(node.subscriber.ready.is_set() for node in nodes)


async def test_cluster_failover_of_the_channel_shard(
    cluster_setup: ClusterSetup, start_node: NodeFactory
) -> None:
    setup = cluster_setup
    channel = f"revsync-scale-{uuid.uuid4().hex[:8]}"
    shard = setup.primary_for(channel)
    # The store's hash tag on another shard: the kill tests the sharded bus, and the
    # store (EVALSHA on one slot) stays available throughout.
    prefix = next(
        p
        for p in (f"scale-{uuid.uuid4().hex[:6]}" for _ in range(1000))
        if setup.primary_for("{" + p + "}").port != shard.port
    )
    store_url = f"{setup.url()}?prefix={prefix}"
    nodes = [await start_node(setup.url(), store_url, channel=channel) for _ in range(NODES)]
    # The bus really is sharded: the owner's shard has our subscriptions, on SSUBSCRIBE.
    client = shard.client()
    numsub = client.execute_command("PUBSUB", "SHARDNUMSUB", channel)
    client.close()
    assert int(numsub[1]) == NODES

    def kill() -> None:
        setup.down.add(shard.port)
        shard.kill()

    def recovered() -> bool:
        try:
            return setup.ok() and setup.primary_for(channel).port != shard.port
        except Exception:
            return False

    await _failover_run(nodes, kill, recovered, "cluster")
    assert setup.primary_for(channel).port != shard.port
