"""Heartbeats: only a ping this node sent, back over the bus, confirms sync.

A subscribe confirmation, another node's ping and a replay of one of this node's old
pings are not heartbeats: a node whose own pings stop coming back goes stale even
while an attacker replays its captured pings on the channel.  And a node answers
tokens only once its first heartbeat is back (start-up waits for it).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aredis

from revsync.events import Op, decode_event
from tests.conftest import RedisServer, free_port
from tests.engine.conftest import NodeFactory, claims, eventually

MAX_STALENESS = 2.0


async def test_a_node_is_ready_and_accepts_tokens_as_soon_as_start_returns(
    make_node: NodeFactory, sqlite_url: str
) -> None:
    node = await make_node(sqlite_url, heartbeat_interval=5, max_staleness=30)
    assert node.subscriber.last_heartbeat is not None
    assert node.status()["ready"]
    assert not node.is_revoked(claims())


async def test_replayed_pings_do_not_keep_a_silent_node_in_sync(
    make_node: NodeFactory, redis_server: RedisServer, sqlite_url: str, tmp_path: Path
) -> None:
    other_dir = tmp_path / "elsewhere"
    other_dir.mkdir()
    elsewhere = RedisServer(free_port(), other_dir)
    elsewhere.start()
    node = await make_node(
        sqlite_url,
        redis_url=redis_server.url,
        heartbeat_interval=0.1,
        max_staleness=MAX_STALENESS,
        resync_interval=0.2,
    )
    tap = aredis.Redis.from_url(redis_server.url)
    replayer = aredis.Redis.from_url(redis_server.url)
    pubsub = tap.pubsub()
    # The node's pings travel on its own ping channel: that is where to capture them.
    await pubsub.subscribe(node.subscriber.ping_channel)
    captured: list[bytes] = []
    try:
        while len(captured) < 5:
            message = await pubsub.get_message(timeout=1.0)
            if (
                message
                and message["type"] == "message"
                and decode_event(message["data"], None).op is Op.PING
            ):
                captured.append(message["data"])
        heartbeats = node.stats.heartbeats
        # Private attribute, unavoidable: split the node's publisher from its
        # subscription (its pings now go to another Redis and never come back).
        connection = node.bus._connection
        old = connection.publisher
        connection.publisher = aredis.Redis.from_url(elsewhere.url, socket_timeout=2)
        await old.aclose()

        stop = asyncio.Event()  # redis-py can swallow a cancel landing mid-command

        async def replay() -> None:
            while not stop.is_set():
                for data in captured:
                    await replayer.publish(node.subscriber.ping_channel, data)
                    await replayer.publish(node.settings.channel, data)
                await asyncio.sleep(0.05)

        replaying = asyncio.create_task(replay())
        try:
            await eventually(lambda: node.status()["stale"], within=MAX_STALENESS + 5)
            assert node.is_revoked(claims())  # fail closed
            assert node.stats.heartbeats <= heartbeats + 1  # one in flight at the switch
        finally:
            stop.set()
            replaying.cancel()
            await asyncio.wait({replaying}, timeout=5)
    finally:
        await pubsub.aclose()
        await tap.aclose()
        await replayer.aclose()
        await node.stop()
        elsewhere.kill()


async def test_another_nodes_pings_are_not_this_nodes_heartbeats(
    make_node: NodeFactory, sqlite_url: str
) -> None:
    quiet = await make_node(sqlite_url, node_id="quiet", heartbeat_interval=30, max_staleness=120)
    chatty = await make_node(sqlite_url, node_id="chatty", heartbeat_interval=0.05)
    before = quiet.stats.heartbeats
    await eventually(lambda: chatty.stats.heartbeats >= 15, within=10)
    # The chatty node's pings go on its own ping channel: the quiet node never even
    # receives them, and sent at most one of its own meanwhile (its next is due in 30 s).
    assert quiet.stats.foreign_pings == 0
    assert quiet.stats.heartbeats - before <= 1
