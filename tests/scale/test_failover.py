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
import redis

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
        settings.setdefault("resync_interval", 2)
        node = RevSync(
            make_app(),
            redis_url=redis_url,
            store_url=store_url,
            heartbeat_interval=0.2,
            max_staleness=30,
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


# -- the first revocation after a failover, over the bus ------------------------------

RESYNC_INTERVAL = 30.0
"""Long enough that no timer catch-up can carry the measured revocation."""
FOLLOW_WITHIN = 1.0


async def _first_revocation(
    nodes: list[RevSync], started: float, reachable_at: float, label: str
) -> float:
    """Revoke a fresh token on nodes[0] now; the seconds from ``reachable_at`` until
    every node refuses it, which must be within FOLLOW_WITHIN, before any resync timer
    could have fired (RESYNC_INTERVAL).  Each other node gets it either as a bus message
    or, if it was published before that node's subscription reached the new primary, by
    the catch-up that follows the resubscription; which one is printed.  A second
    revocation right after must reach every other node as a bus message."""
    applied = [node.stats.applied for node in nodes]
    fresh = claims()
    await nodes[0].revoke(fresh)
    await _all_refuse(nodes, [fresh], within=10)
    took = time.monotonic() - reachable_at
    first = await _applied_since(nodes, applied)
    print(
        f"\n[{label}] first revocation after the failover refused by all {len(nodes)} nodes "
        f"{took * 1000:.0f} ms after the new primary answered; received as a bus message "
        f"by {sum(first[1:])} of {len(nodes) - 1} other nodes (the rest read it at their "
        "resubscription's catch-up)"
    )
    assert time.monotonic() - started < RESYNC_INTERVAL, "a timer catch-up could have run"
    assert took <= FOLLOW_WITHIN, f"{label}: {took:.2f}s after the new primary answered"
    applied = [node.stats.applied for node in nodes]
    second = claims()
    sent = time.monotonic()
    await nodes[0].revoke(second)
    await _all_refuse(nodes, [second], within=FOLLOW_WITHIN)
    second_took = time.monotonic() - sent
    assert all((await _applied_since(nodes, applied))[1:]), "the bus did not carry it"
    print(f"[{label}] the next revocation: {second_took * 1000:.1f} ms, over the bus")
    return took


async def _applied_since(nodes: list[RevSync], before: list[int]) -> list[bool]:
    """Per node, whether it applied a bus message since ``before`` (its ``applied``
    counters): a catch-up that read the change first leaves the message a duplicate.
    A message refused on arrival is applied a moment later, so this waits a little."""

    def moved() -> list[bool]:
        return [node.stats.applied > was for node, was in zip(nodes, before, strict=True)]

    for _ in range(100):
        if all(moved()[1:]):
            break
        await asyncio.sleep(0.01)
    return moved()


def _answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=0.1, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


async def _wait_for(check: Callable[[], bool], what: str, within: float = 30.0) -> float:
    """Poll ``check`` every 10 ms; the monotonic time it first held."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {within}s")
        await asyncio.sleep(0.01)
    return time.monotonic()


async def test_sentinel_the_first_revocation_after_a_kill_goes_over_the_bus(
    sentinel_setup: SentinelSetup, start_node: NodeFactory, tmp_path: Any
) -> None:
    setup = sentinel_setup
    store_url = f"sqlite:///{tmp_path / 'revsync.db'}"
    started = time.monotonic()
    first = await start_node(setup.url(), store_url, resync_interval=RESYNC_INTERVAL)
    channel = first.settings.channel
    nodes = [first] + [
        await start_node(setup.url(), store_url, resync_interval=RESYNC_INTERVAL, channel=channel)
        for _ in range(NODES - 1)
    ]
    old = setup.master.port
    setup.master.kill()

    reachable_at = await _wait_for(
        lambda: _sentinels_announce(setup, old), "a promoted master announced and answering"
    )
    await _first_revocation(nodes, started, reachable_at, "sentinel, kill -9")


async def test_sentinel_a_demoted_master_that_stays_up_keeps_no_node(
    sentinel_setup: SentinelSetup, start_node: NodeFactory, tmp_path: Any
) -> None:
    """SENTINEL FAILOVER: the old master stays up, a master with its clients for about
    10 s (Redis 7.0) before Sentinel demotes it.  Every node must leave it at the
    switch: subscriptions and publishes on the new master, long before that."""
    setup = sentinel_setup
    store_url = f"sqlite:///{tmp_path / 'revsync.db'}"
    started = time.monotonic()
    first = await start_node(setup.url(), store_url, resync_interval=RESYNC_INTERVAL)
    channel = first.settings.channel
    nodes = [first] + [
        await start_node(setup.url(), store_url, resync_interval=RESYNC_INTERVAL, channel=channel)
        for _ in range(NODES - 1)
    ]
    old, new = setup.master, setup.replica
    assert _numsub(old.port, channel) == NODES
    sentinel = redis.Redis(port=setup.sentinels[0].port)
    sentinel.execute_command("SENTINEL", "FAILOVER", "mymaster")
    sentinel.close()
    switched_at = await _wait_for(lambda: setup.master_port() == new.port, "the switch")
    tap = redis.Redis(port=new.port).pubsub()
    tap.subscribe(channel)
    # Every node's subscription moves to the new master, while the old one is still
    # a master that would keep them (its demotion comes seconds later).
    await _wait_for(lambda: _numsub(new.port, channel) == NODES + 1, "subscriptions moved", 5)
    moved = time.monotonic() - switched_at
    assert _numsub(old.port, channel) == 0
    assert old.client().info("replication")["role"] == "master", "demoted already"
    await _first_revocation(nodes, started, switched_at, "sentinel, demoted master")
    # The revoking node published on the new master, not on the old one.
    published = [m for m in _drain(tap) if m["type"] == "message"]
    tap.close()
    assert published, "the revocation was not published on the new master"
    print(
        f"[sentinel, demoted master] subscriptions on the new master {moved * 1000:.0f} ms "
        "after the switch"
    )


def _sentinels_announce(setup: SentinelSetup, old: int) -> bool:
    """Whether the sentinels name a master other than ``old`` as a client asks them
    (SENTINEL MASTERS, healthy flags: GET-MASTER-ADDR-BY-NAME names the promoted replica
    earlier, while the failover is still in progress) and it answers."""
    client = redis.Redis(port=setup.sentinels[0].port, socket_timeout=1)
    try:
        state = client.sentinel_masters()["mymaster"]
    except redis.RedisError:
        return False
    finally:
        client.close()
    healthy = state["is_master"] and not (state["is_sdown"] or state["is_odown"])
    return bool(healthy and int(state["port"]) != old and _answers(int(state["port"])))


def _numsub(port: int, channel: str) -> int:
    client = redis.Redis(port=port)
    try:
        return int(client.execute_command("PUBSUB", "NUMSUB", channel)[1])
    finally:
        client.close()


def _drain(pubsub: Any) -> list[dict[str, Any]]:
    messages = []
    while (message := pubsub.get_message(timeout=0.2)) is not None:
        messages.append(message)
    return messages


async def test_cluster_the_first_revocation_after_a_kill_goes_over_the_bus(
    cluster_setup: ClusterSetup, start_node: NodeFactory, tmp_path: Any
) -> None:
    setup = cluster_setup
    store_url = f"sqlite:///{tmp_path / 'revsync.db'}"
    channel = f"revsync-scale-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    nodes = [
        await start_node(setup.url(), store_url, resync_interval=RESYNC_INTERVAL, channel=channel)
        for _ in range(NODES)
    ]
    shard = setup.primary_for(channel)
    setup.down.add(shard.port)
    shard.kill()

    def promoted() -> bool:
        try:
            owner = setup.primary_for(channel)
        except BaseException:  # primary_for fails the test when no node answers
            return False
        return owner.port != shard.port and _answers(owner.port)

    reachable_at = await _wait_for(promoted, "a promoted shard primary answering")
    await _first_revocation(nodes, started, reachable_at, "cluster, kill -9")
