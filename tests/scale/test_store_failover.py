"""Store failover on every topology, with the write outage measured.

One node revokes a fresh token every few milliseconds while the store's primary is
killed with kill -9 and a replica takes over: the Redis store on Sentinel and on
Cluster (the primary of the shard holding the store's ``{prefix}`` hash tag), and
PostgreSQL with a streaming replica promoted by ``pg_ctl promote``.  Each test prints
how long writes were blocked (from the kill to the first ``revoke()`` that returned
again; pytest -s shows it), and ends with every node holding exactly the store's
revocations.  The bus is the shared Redis throughout, so only the store fails over.

Either nothing whose ``revoke()`` returned may be lost (Redis with ``min_replicas=1``,
PostgreSQL with synchronous replication), or the loss is forced and every node must
notice it (docs/design.md, "When the store goes back in time"):

1. with the writer paused and the replica holding everything so far, replication
   is held: Redis: ``CLIENT PAUSE WRITE`` on the replica, which leaves the
   replication stream unapplied in its input buffer (a replica drops that buffer
   when it loses its master); PostgreSQL: the replica's ``primary_conninfo``
   emptied, which stops its WAL receiver;
2. the writer revokes on: these revocations return, and every node reads them from
   the store (its catch-up passes them), so each node holds history about to be lost;
3. the primary is killed, the replica released and promoted: those revocations are
   gone, and their sequence numbers are handed out again to new writes.  Every node
   must re-read the whole store (``store_resets``).
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from revsync import RevSync
from revsync.changes import Kind
from revsync.stores import store_from_url
from revsync.stores.base import StoreError
from tests.conftest import RedisServer
from tests.engine.conftest import claims, eventually, make_app
from tests.scale.conftest import ClusterSetup, SentinelSetup, replica_linked
from tests.scale.postgres_pair import PostgresPair, postgres_pair

NodeFactory = Callable[[str], Awaitable[RevSync]]
NODES = 3
WITHIN = 60.0
"""Seconds any one recovery step may take before the test fails (generous: 2 cores)."""


@pytest.fixture
async def start_node(redis_url: str, channel: str) -> AsyncIterator[NodeFactory]:
    nodes: list[RevSync] = []

    async def factory(store_url: str) -> RevSync:
        node = RevSync(
            make_app(),
            redis_url=redis_url,
            store_url=store_url,
            channel=channel,
            heartbeat_interval=0.2,
            max_staleness=60,
            resync_interval=1,
            startup_timeout=20,
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
        self.returned: list[tuple[float, float]] = []
        """(started, returned) of each revoke that returned, monotonic."""
        self.top_seq = 0
        self.failed = 0
        self._go = asyncio.Event()
        self._go.set()
        self._idle = asyncio.Event()
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stop:
            if not self._go.is_set():
                self._idle.set()
                await self._go.wait()
                self._idle.clear()
                continue
            token = claims()
            started = time.monotonic()
            try:
                change = await self.node.revoke(token)
            except StoreError:
                self.failed += 1
                await asyncio.sleep(0.02)
                continue
            self.revoked.append(token)
            self.returned.append((started, time.monotonic()))
            self.top_seq = max(self.top_seq, change.seq)
            await asyncio.sleep(0.005)

    async def pause(self) -> None:
        """Return once no revoke is in flight and none will start until resume()."""
        self._go.clear()
        await self._idle.wait()

    def resume(self) -> None:
        self._go.set()

    async def stop(self) -> None:
        self._stop = True
        self._go.set()
        assert self._task is not None
        await self._task

    def returned_since(self, moment: float) -> list[float]:
        """When the revokes begun at or after ``moment`` returned (one begun before
        may return after it, acknowledged by the old primary)."""
        return [returned for started, returned in self.returned if started >= moment]

    async def until_writing_after(self, moment: float, label: str) -> float:
        """Wait for 20 revokes begun after ``moment`` to return; the first one's delay."""
        while len(self.returned_since(moment)) < 20:
            if time.monotonic() - moment > WITHIN:
                pytest.fail(f"{label}: writes did not resume within {WITHIN}s")
            await asyncio.sleep(0.05)
        return self.returned_since(moment)[0] - moment

    async def until_revoked(self, count: int) -> None:
        await eventually(lambda: len(self.revoked) >= count, WITHIN)


async def store_jtis(store_url: str) -> set[str]:
    """The jtis the store holds as revoked, read by a client of the test's own."""
    store = store_from_url(store_url)
    await store.connect()
    try:
        rows, last = [], 0
        while page := await store.since(last):
            rows += page
            last = page[-1].seq
    finally:
        await store.close()
    return {row.key for row in rows if row.kind is Kind.JTI and row.revoked}


async def equal_to_store(nodes: list[RevSync], store_url: str) -> set[str]:
    """Wait until every node holds exactly the store's revoked jtis; return them."""
    deadline = time.monotonic() + WITHIN
    while True:
        try:
            stored = await store_jtis(store_url)
        except StoreError:
            stored = None
        if stored is not None and all(
            set(node.revocations.snapshot_jtis()) == stored for node in nodes
        ):
            return stored
        if time.monotonic() > deadline:
            held = [len(node.revocations.snapshot_jtis()) for node in nodes]
            pytest.fail(f"nodes hold {held} revocations, the store {len(stored or ())}")
        await asyncio.sleep(0.1)


def jtis(tokens: list[dict[str, Any]]) -> set[str]:
    return {token["jti"] for token in tokens}


class Failover:
    """How one topology fails over: ``kill`` the primary, ``after_kill`` (release a
    held replica, promote one), ``promoted`` (a replica has taken over)."""

    def __init__(
        self,
        kill: Callable[[], None],
        promoted: Callable[[], bool],
        after_kill: Callable[[], None] = lambda: None,
    ) -> None:
        self.kill = kill
        self.promoted = promoted
        self.after_kill = after_kill


async def _until_promoted(failover: Failover, label: str) -> None:
    # Releasing or promoting the replica blocks: in a thread, while the writer keeps trying.
    await asyncio.to_thread(failover.after_kill)
    deadline = time.monotonic() + WITHIN
    while not await asyncio.to_thread(failover.promoted):
        if time.monotonic() > deadline:
            pytest.fail(f"{label}: no replica took over within {WITHIN}s")
        await asyncio.sleep(0.1)


async def lossless_failover(
    nodes: list[RevSync], store_url: str, failover: Failover, label: str
) -> None:
    """Kill the primary under steady revocations; nothing that returned may be lost."""
    writer = Writer(nodes[0])
    writer.start()
    await writer.until_revoked(20)
    killed_at = time.monotonic()
    failover.kill()
    await _until_promoted(failover, label)
    blocked = await writer.until_writing_after(killed_at, label)
    await writer.stop()
    stored = await equal_to_store(nodes, store_url)
    settled = time.monotonic() - killed_at
    lost = jtis(writer.revoked) - stored
    assert not lost, f"{label}: {len(lost)} revocations that returned are gone"
    assert all(node.is_revoked(token) for node in nodes for token in writer.revoked)
    resets = [node.stats.store_resets for node in nodes]
    print(
        f"\n[{label}] writes blocked {blocked:.2f}s after kill -9 ({writer.failed} revokes "
        f"failed); {len(writer.revoked)} returned, 0 lost; every node equal to the store "
        f"{settled:.2f}s after the kill (store_resets {resets})"
    )


async def lossy_failover(
    nodes: list[RevSync],
    store_url: str,
    failover: Failover,
    hold: Callable[[], None],
    label: str,
) -> None:
    """Kill the primary after revocations it never replicated (see the module
    docstring); every node must notice that the store lost them."""
    writer = Writer(nodes[0])
    writer.start()
    await writer.until_revoked(20)
    await writer.pause()
    kept = list(writer.revoked)
    await asyncio.to_thread(hold)
    writer.resume()
    await writer.until_revoked(len(kept) + 20)
    await writer.pause()
    doomed = writer.revoked[len(kept) :]
    # Every node reads them from the store: each holds history the store will lose.
    await eventually(lambda: all(n.replica.store_seq >= writer.top_seq for n in nodes), 15)
    assert all(n.stats.store_resets == 0 for n in nodes)
    with capture_logs() as logs:
        killed_at = time.monotonic()
        failover.kill()
        writer.resume()
        await _until_promoted(failover, label)
        blocked = await writer.until_writing_after(killed_at, label)
        await writer.stop()
        await eventually(lambda: all(n.stats.store_resets >= 1 for n in nodes), WITHIN)
        stored = await equal_to_store(nodes, store_url)
        settled = time.monotonic() - killed_at
    noticed = [e for e in logs if e["event"] == "revsync.store_history_lost"]
    # Once each: a second re-read would be a false alarm (nothing more was lost).
    assert [n.stats.store_resets for n in nodes] == [1] * len(nodes), noticed
    after = writer.revoked[len(kept) + len(doomed) :]
    assert not jtis(doomed) & stored, "the forced loss did not happen: the test proves nothing"
    assert jtis(kept + after) <= stored, "revocations made outside the hold were lost"
    assert not any(node.is_revoked(token) for node in nodes for token in doomed)
    print(
        f"\n[{label}] writes blocked {blocked:.2f}s after kill -9 ({writer.failed} revokes "
        f"failed); {len(doomed)} returned revocations lost by the failover, noticed by "
        f"every node, once each; every node equal to the store "
        f"{settled:.2f}s after the kill; why: {sorted({e['reason'] for e in noticed})}"
    )


# -- Redis: holding replication ----------------------------------------------------------


def _info(server: RedisServer) -> dict[str, Any]:
    client = server.client()
    try:
        return dict(client.info("replication"))
    finally:
        client.close()


def _command(server: RedisServer, *args: Any) -> Any:
    client = server.client()
    try:
        return client.execute_command(*args)
    finally:
        client.close()


def _wait(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WITHIN
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {WITHIN}s")
        time.sleep(0.02)


def hold_redis(primary: RedisServer, replicas: list[RedisServer]) -> None:
    """Once the replicas have applied everything the primary has, pause them: a
    replica under CLIENT PAUSE WRITE leaves its master's stream unapplied."""
    target = int(_info(primary)["master_repl_offset"])
    for replica in replicas:
        _wait(functools.partial(_applied, replica, target), "replica in sync")
        _command(replica, "CLIENT", "PAUSE", int(WITHIN * 1000), "WRITE")


def _applied(replica: RedisServer, offset: int) -> bool:
    return int(_info(replica)["slave_repl_offset"]) >= offset


def release_redis(replica: RedisServer) -> None:
    """Unpause a held replica once it has noticed that its master is gone (it drops
    the stream it had not applied)."""
    _wait(lambda: not replica_linked(replica), "the replica noticing its master's death")
    _command(replica, "CLIENT", "UNPAUSE")


# -- Redis on Sentinel ---------------------------------------------------------------------


def _sentinel_failover(setup: SentinelSetup) -> Failover:
    old = setup.master.port

    def promoted() -> bool:
        try:
            return setup.master_port() != old
        except Exception:
            return False

    return Failover(setup.master.kill, promoted)


async def test_sentinel_min_replicas_0_loses_held_writes_and_every_node_notices(
    sentinel_setup: SentinelSetup, start_node: NodeFactory
) -> None:
    setup = sentinel_setup
    store_url = setup.url(f"?prefix=sf-{uuid.uuid4().hex[:6]}")
    nodes = [await start_node(store_url) for _ in range(NODES)]
    failover = _sentinel_failover(setup)
    failover.after_kill = lambda: release_redis(setup.replica)
    await lossy_failover(
        nodes,
        store_url,
        failover,
        lambda: hold_redis(setup.master, setup.replicas),
        "sentinel, Redis store, min_replicas=0",
    )


@pytest.mark.parametrize("sentinel_setup", [2], indirect=True)
async def test_sentinel_min_replicas_1_with_two_replicas_loses_nothing(
    sentinel_setup: SentinelSetup, start_node: NodeFactory
) -> None:
    setup = sentinel_setup
    store_url = setup.url(f"?prefix=sf-{uuid.uuid4().hex[:6]}&min_replicas=1")
    nodes = [await start_node(store_url) for _ in range(NODES)]
    # With no replica taking writes, a revoke does not return: it raises.
    await asyncio.to_thread(hold_redis, setup.master, setup.replicas)
    with pytest.raises(StoreError, match="reached 0 of 1 replicas"):
        await nodes[0].revoke(claims())
    for replica in setup.replicas:
        await asyncio.to_thread(_command, replica, "CLIENT", "UNPAUSE")
    await lossless_failover(
        nodes,
        store_url,
        _sentinel_failover(setup),
        "sentinel with 2 replicas, Redis store, min_replicas=1",
    )


# -- Redis on Cluster ----------------------------------------------------------------------


def _store_shard(setup: ClusterSetup, prefix: str) -> tuple[RedisServer, RedisServer]:
    """The primary of the shard holding ``{prefix}``, and its replica."""
    primary = setup.primary_for("{" + prefix + "}")
    port = int(_info(primary)["slave0"]["port"])
    return primary, next(s for s in setup.servers if s.port == port)


def _cluster_failover(setup: ClusterSetup, prefix: str, *, restart_old: bool) -> Failover:
    primary, _ = _store_shard(setup, prefix)

    def kill() -> None:
        setup.down.add(primary.port)
        primary.kill()

    def promoted() -> bool:
        try:
            moved = setup.primary_for("{" + prefix + "}").port != primary.port
        except Exception:
            return False
        if moved and restart_old and not primary.running:
            primary.start()  # its nodes.conf makes it a replica of the promoted one
        return moved

    return Failover(kill, promoted)


async def test_cluster_min_replicas_0_loses_held_writes_and_every_node_notices(
    cluster_setup: ClusterSetup, start_node: NodeFactory
) -> None:
    setup = cluster_setup
    prefix = f"sf-{uuid.uuid4().hex[:6]}"
    store_url = f"{setup.url()}?prefix={prefix}"
    nodes = [await start_node(store_url) for _ in range(NODES)]
    primary, replica = _store_shard(setup, prefix)
    failover = _cluster_failover(setup, prefix, restart_old=False)
    failover.after_kill = lambda: release_redis(replica)
    await lossy_failover(
        nodes,
        store_url,
        failover,
        lambda: hold_redis(primary, [replica]),
        "cluster, Redis store's shard, min_replicas=0",
    )


async def test_cluster_min_replicas_1_loses_nothing(
    cluster_setup: ClusterSetup, start_node: NodeFactory
) -> None:
    setup = cluster_setup
    prefix = f"sf-{uuid.uuid4().hex[:6]}"
    store_url = f"{setup.url()}?prefix={prefix}&min_replicas=1"
    nodes = [await start_node(store_url) for _ in range(NODES)]
    primary, replica = _store_shard(setup, prefix)
    # WAIT runs on the script's own connection to the shard's primary: with the
    # replica held, the write is not acknowledged and revoke() raises.
    await asyncio.to_thread(hold_redis, primary, [replica])
    with pytest.raises(StoreError, match="reached 0 of 1 replicas"):
        await nodes[0].revoke(claims())
    await asyncio.to_thread(_command, replica, "CLIENT", "UNPAUSE")
    await lossless_failover(
        nodes,
        store_url,
        _cluster_failover(setup, prefix, restart_old=True),
        "cluster, Redis store's shard, min_replicas=1 (1 replica: the old primary rejoins)",
    )


# -- PostgreSQL with a streaming replica ---------------------------------------------------


@pytest.fixture
def synchronous_pair() -> Iterator[PostgresPair]:
    yield from postgres_pair(synchronous=True)


@pytest.fixture
def asynchronous_pair() -> Iterator[PostgresPair]:
    yield from postgres_pair(synchronous=False)


def _postgres_failover(pair: PostgresPair) -> Failover:
    done: list[bool] = []

    def promote() -> None:
        pair.promote()
        done.append(True)

    return Failover(pair.primary.kill, lambda: bool(done), promote)


async def test_postgres_synchronous_replica_promoted_loses_nothing(
    synchronous_pair: PostgresPair, start_node: NodeFactory
) -> None:
    pair = synchronous_pair
    nodes = [await start_node(pair.dsn()) for _ in range(NODES)]
    await lossless_failover(
        nodes,
        pair.dsn(),
        _postgres_failover(pair),
        "PostgreSQL, synchronous replica promoted",
    )


async def test_postgres_asynchronous_replica_promoted_loses_held_writes_and_every_node_notices(
    asynchronous_pair: PostgresPair, start_node: NodeFactory
) -> None:
    pair = asynchronous_pair
    nodes = [await start_node(pair.dsn()) for _ in range(NODES)]
    await lossy_failover(
        nodes,
        pair.dsn(),
        _postgres_failover(pair),
        pair.hold_replication,
        "PostgreSQL, asynchronous replica promoted",
    )
