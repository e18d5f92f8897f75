"""Cluster trouble against the bus's failover following: the channel's slot migrated
to another shard (resharding, not a failover), every node of the cluster down and
back, and nodes stopped in the middle of a failover.  Every node must end subscribed
on the slot's owner of the moment, with revocations flowing over the bus, and leave
no connection behind."""

from __future__ import annotations

import asyncio
import time

import redis

from revsync import RevSync
from revsync._cluster_bus import channel_slot
from tests.attacks15.conftest import Start
from tests.attacks15.sockets import connections_to
from tests.engine.conftest import claims, eventually
from tests.scale.conftest import ClusterSetup

NODES = 3


async def _over_the_bus(nodes: list[RevSync], within: float = 3.0) -> float:
    """Revoke on nodes[0]; seconds until every node refuses it, every other one having
    taken it from the bus (applied, or a duplicate of a catch-up)."""
    applied = [n.stats.applied + n.stats.duplicates for n in nodes]
    token = claims()
    started = time.monotonic()
    await nodes[0].revoke(token)
    await eventually(lambda: all(n.is_revoked(token) for n in nodes), within=within)
    took = time.monotonic() - started
    await eventually(
        lambda: all(
            n.stats.applied + n.stats.duplicates > a
            for n, a in zip(nodes[1:], applied[1:], strict=True)
        ),
        within=2,
    )
    return took


def _shard_subscribers(port: int, channel: str) -> int:
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        return int(client.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1])
    except redis.RedisError:
        return -1
    finally:
        client.close()


def _node_id(port: int) -> str:
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        return str(client.execute_command("CLUSTER", "MYID").decode())
    finally:
        client.close()


async def test_the_channels_slot_migrated_to_another_shard(
    cluster_setup: ClusterSetup, start: Start
) -> None:
    setup = cluster_setup
    nodes = [await start(setup.url()) for _ in range(NODES)]
    channel = nodes[0].settings.channel
    source = setup.primary_for(channel)
    target = next(
        s
        for s in setup.servers
        if s.port != source.port and s.client().info("replication")["role"] == "master"
    )
    assert _shard_subscribers(source.port, channel) == NODES
    slot = channel_slot(channel)
    source_id, target_id = _node_id(source.port), _node_id(target.port)
    # Resharding one slot with no keys in it, as redis-cli --cluster reshard does.
    target.client().execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.client().execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    target.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    source.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    moved_at = time.monotonic()
    await eventually(lambda: _shard_subscribers(target.port, channel) == NODES, within=10)
    followed = time.monotonic() - moved_at
    assert _shard_subscribers(source.port, channel) == 0
    took = await _over_the_bus(nodes)
    print(
        f"\n[resharding] every subscription on the slot's new owner {followed * 1000:.0f} ms "
        f"after CLUSTER SETSLOT; the next revocation took {took * 1000:.0f} ms"
    )


async def test_every_cluster_node_down_then_back(cluster_setup: ClusterSetup, start: Start) -> None:
    setup = cluster_setup
    nodes = [await start(setup.url()) for _ in range(NODES)]
    ports = [s.port for s in setup.servers]
    for server in setup.servers:
        server.kill()
    await asyncio.sleep(3.0)
    cpu = time.process_time()
    await asyncio.sleep(3.0)
    busy = time.process_time() - cpu
    held = connections_to(ports)
    for server in setup.servers:
        server.start()  # nodes.conf kept: the same cluster, the same slots
    await eventually(setup.ok, within=30)
    back = time.monotonic()
    await eventually(
        lambda: (
            _shard_subscribers(
                setup.primary_for(nodes[0].settings.channel).port, nodes[0].settings.channel
            )
            == NODES
        ),
        within=15,
    )
    resubscribed = time.monotonic() - back
    took = await _over_the_bus(nodes)
    print(
        f"\n[cluster down] {busy:.2f} s CPU in 3 s of outage, {held} connections held; "
        f"every node resubscribed {resubscribed * 1000:.0f} ms after cluster_state:ok, "
        f"the next revocation took {took * 1000:.0f} ms"
    )
    assert held == 0


async def test_stop_in_the_middle_of_a_failover(cluster_setup: ClusterSetup, start: Start) -> None:
    setup = cluster_setup
    nodes = [await start(setup.url()) for _ in range(NODES)]
    ports = [s.port for s in setup.servers]
    channel = nodes[0].settings.channel
    shard = setup.primary_for(channel)
    setup.down.add(shard.port)
    shard.kill()
    took = []
    for node, when in zip(nodes, (0.1, 0.8, None), strict=True):
        if when is None:  # the last one once the replica is promoted
            await eventually(lambda: setup.primary_for(channel).port != shard.port, within=30)
        else:
            await asyncio.sleep(when)
        started = time.monotonic()
        await node.stop()
        took.append(time.monotonic() - started)
    print(f"\n[stop during a cluster failover] stop() took {[round(t, 3) for t in took]} s")
    assert max(took) < 5, took
    # What revsync holds is closed; what may remain (0 to 4 connections measured, in
    # about half the runs) is redis-py 8.1's: a topology refresh during the failover
    # replaces its ClusterNode objects and only marks the connections they had in use
    # for reconnect, and aclose() closes the nodes still in its cache, not those.  A
    # node process that exits drops them; bounded here so that a leak of revsync's own
    # (a watch, a lookup client, a subscription per node) still fails.
    await asyncio.sleep(0.2)
    assert connections_to(ports) <= 2 * NODES
