"""Heartbeats off the shared channel: each node pings on a channel of its own,
subscribed on the same connection as the shared channel, so no node receives another
node's pings (O(N) deliveries per heartbeat round, not O(N²)), real nodes on a real
Redis.  Nodes of older versions still ping on the shared channel; the new ones ignore
those, as before.  And the ping channel is what proves the link: a node whose ping
subscription is lost goes stale although its shared channel still works."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aredis
from redis.crc import key_slot

from revsync._bus import ping_channel
from revsync.config import SettingError, resolve
from revsync.events import Op, RevocationEvent, decode_event, encode_event
from tests.conftest import RedisServer
from tests.engine.conftest import NodeFactory, claims, eventually

NODES = 4


async def test_no_node_receives_another_nodes_pings(
    make_node: NodeFactory, redis_server: RedisServer, sqlite_url: str, channel: str
) -> None:
    tap = aredis.Redis.from_url(redis_server.url)
    shared = tap.pubsub()
    await shared.subscribe(channel)
    nodes = [
        await make_node(
            sqlite_url, redis_url=redis_server.url, node_id=f"n{i}", heartbeat_interval=0.05
        )
        for i in range(NODES)
    ]
    start = [node.stats.heartbeats for node in nodes]
    await eventually(
        lambda: all(n.stats.heartbeats - s >= 20 for n, s in zip(nodes, start, strict=True)),
        within=10,
    )
    # Every node got its own pings back, and not one of the others' 3 x 20 or more.
    assert [node.stats.foreign_pings for node in nodes] == [0] * NODES
    assert all(not node.status()["stale"] and node.status()["ready"] for node in nodes)
    # Each ping channel has exactly one subscriber, its node; the shared channel all.
    for node in nodes:
        assert node.subscriber.ping_channel == f"{{{channel}}}:ping:{node.settings.node_id}"
        counts = await tap.execute_command(
            "PUBSUB", "NUMSUB", channel, node.subscriber.ping_channel
        )
        assert [int(counts[1]), int(counts[3])] == [NODES + 1, 1]
    # Nothing but revocations on the shared channel: a revocation, and no ping at all.
    token = claims()
    await nodes[0].revoke(token)
    await eventually(lambda: all(node.is_revoked(token) for node in nodes), within=2)
    ops = []
    while (message := await shared.get_message(timeout=0.2)) is not None:
        if message["type"] == "message":
            ops.append(decode_event(message["data"], None).op)
    assert Op.REVOKE in ops
    assert Op.PING not in ops
    await shared.aclose()
    await tap.aclose()


async def test_an_older_nodes_pings_on_the_shared_channel_are_ignored(
    make_node: NodeFactory, redis_server: RedisServer, sqlite_url: str, channel: str
) -> None:
    """A rolling upgrade: old nodes ping on the shared channel; a new node ignores
    those pings (counted) and keeps confirming sync with its own."""
    node = await make_node(sqlite_url, redis_url=redis_server.url, heartbeat_interval=0.1)
    old = aredis.Redis.from_url(redis_server.url)
    heartbeats = node.stats.heartbeats
    for i in range(20):
        ping = RevocationEvent.ping("old-node", f"nonce-{i}", time.time())
        await old.publish(channel, encode_event(ping, None))
        await asyncio.sleep(0.02)
    await old.aclose()
    await eventually(lambda: node.stats.foreign_pings >= 20, within=2)
    await eventually(lambda: node.stats.heartbeats >= heartbeats + 3, within=3)
    assert not node.status()["stale"]


async def test_a_node_whose_ping_subscription_is_lost_goes_stale(
    make_node: NodeFactory, redis_server: RedisServer, sqlite_url: str, channel: str
) -> None:
    """The ping channel alone is dropped (the shared channel stays subscribed, on the
    same connection): the node's pings stop coming back and it goes stale before its
    watchdog (three heartbeat intervals, at least 1 s) reconnects; then it recovers."""
    node = await make_node(
        sqlite_url,
        redis_url=redis_server.url,
        heartbeat_interval=0.1,
        max_staleness=0.5,
        resync_interval=0.2,
    )
    await eventually(lambda: node.stats.heartbeats >= 3, within=3)
    token = claims()
    assert not node.is_revoked(token)
    # Private attribute, unavoidable: the reader's live subscription.
    await node.subscriber._pubsub.unsubscribe(node.subscriber.ping_channel)
    tap = aredis.Redis.from_url(redis_server.url)
    counts = await tap.execute_command("PUBSUB", "NUMSUB", channel, node.subscriber.ping_channel)
    assert [int(counts[1]), int(counts[3])] == [1, 0]
    await tap.aclose()
    await eventually(lambda: node.status()["stale"], within=2)
    assert node.is_revoked(token)  # fail closed
    # The watchdog resubscribes both channels; its pings come back again.
    await eventually(lambda: not node.status()["stale"], within=5)
    assert not node.is_revoked(token)
    assert node.stats.reconnects >= 1


def test_the_ping_channel_shares_the_channels_cluster_slot() -> None:
    for channel in ("revsync", "{app}.revsync", "a{b", "{q", "a{b}c}"):
        ping = ping_channel(channel, "node-1")
        assert key_slot(ping.encode()) == key_slot(channel.encode()), (channel, ping)
    assert ping_channel("revsync", "n") == "{revsync}:ping:n"
    assert ping_channel("{app}.revsync", "n") == "{app}.revsync:ping:n"
    # A '}' without a hash tag: no ping channel could share its slot, so it is refused.
    for channel in ("a}b", "x{}y{z}"):
        with pytest.raises(SettingError, match="REVSYNC_CHANNEL"):
            resolve({}, {"channel": channel})
