"""An ACL that lets a node's ping channel through but not the shared channel: the ping
proves the connection, so a node must never be synced unless that same connection is
subscribed to the shared channel too.

Redis refuses a SUBSCRIBE naming a channel the user may not use as a whole (no channel
of it is subscribed), and since Redis 7.0 it disconnects a client whose subscriptions
an ACL change forbids; the node must then stay stale (fail closed), not keep pinging
itself into "synced" over a connection that no longer carries revocations."""

from __future__ import annotations

import asyncio

import redis

from tests.conftest import RedisServer
from tests.engine.conftest import NodeFactory, claims, eventually

PASSWORD = "ping-only-password-0123456789"


def _rules(channel: str, *, shared: bool) -> list[str]:
    rules = ["on", f">{PASSWORD}", "resetchannels", f"&{{{channel}}}:ping:*", "resetkeys"]
    rules += ["-@all", "+subscribe", "+unsubscribe", "+publish", "+ping"]
    return [*rules, f"&{channel}"] if shared else rules


async def test_losing_the_shared_channel_but_not_the_ping_channel_goes_stale(
    make_node: NodeFactory, redis_server: RedisServer, sqlite_url: str, channel: str
) -> None:
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "node", *_rules(channel, shared=True))
    url = f"redis://node:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    node = await make_node(
        sqlite_url, redis_url=url, heartbeat_interval=0.1, max_staleness=1, resync_interval=0.3
    )
    await eventually(lambda: node.stats.heartbeats >= 3, within=3)
    token = claims()
    assert not node.is_revoked(token)
    # The shared channel is taken away; the ping channel stays allowed.
    admin.execute_command("ACL", "SETUSER", "node", "resetchannels", f"&{{{channel}}}:ping:*")
    await eventually(lambda: node.status()["stale"], within=5)
    assert node.is_revoked(token)  # fail closed: an unknown token is refused
    heartbeats = node.stats.heartbeats
    assert admin.pubsub_numsub(channel)[0][1] == 0
    assert admin.pubsub_numsub(node.subscriber.ping_channel)[0][1] == 0
    # Its pings are published (allowed) but nothing brings them back: still stale.
    await asyncio.sleep(1.0)
    assert node.stats.heartbeats == heartbeats
    await eventually(lambda: node.subscriber.bus_state == "disconnected", within=2)
    assert node.status()["stale"]
    # The channel given back: synced again.
    admin.execute_command("ACL", "SETUSER", "node", f"&{channel}")
    await eventually(lambda: not node.status()["stale"], within=10)
    assert not node.is_revoked(token)
    admin.close()


async def test_a_node_allowed_only_its_ping_channel_never_becomes_ready(
    make_node: NodeFactory, redis_server: RedisServer, sqlite_url: str, channel: str
) -> None:
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "node", *_rules(channel, shared=False))
    url = f"redis://node:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    # The pings themselves could round-trip on a connection of their own:
    probe = redis.Redis.from_url(url).pubsub()
    probe.subscribe(f"{{{channel}}}:ping:probe")
    probe.close()
    node = await make_node(
        sqlite_url, redis_url=url, heartbeat_interval=0.1, startup_timeout=3, start=False
    )
    try:
        await node.start()
    except Exception as exc:  # the start-up timeout
        print(f"\n[ping channel only] start() raised {type(exc).__name__}: {exc}")
    else:
        raise AssertionError("a node that cannot hear the shared channel became ready")
    assert node.stats.heartbeats == 0
    assert not node.subscriber.synced.is_set()
    admin.close()
