"""Issue 12, finding 9: a node whose own heartbeats never come back never goes stale.

The node publishes its heartbeat and expects it back on its subscription.  Here its
publisher talks to one Redis and its subscription to another (a split in the path:
a proxy or a misrouted connection pool), so no heartbeat ever returns.  The reader
then reconnects every heartbeat timeout, and each re-subscribe confirmation is
counted as a heartbeat: ``last_heartbeat`` is refreshed, the node never reports
stale and, in fail-closed mode, keeps accepting tokens although it cannot know
whether revocations reach it.  A subscribe confirmation is not a round trip of the
node's own message: within a few times max_staleness the node must be stale and
refuse (fail closed) a fresh, never-revoked token.

heartbeat_interval 0.1 s (heartbeat timeout: its 1 s floor); max_staleness 3 s, above
the ~1.4 s reconnect cycle of today's reader (1 s timeout + a 0.25 s poll + backoff),
so today's node is never stale, even for a moment; the resync timer (0.2 s) keeps
the store side of the sync fresh, so only the bus side can make it stale.
"""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aredis

from tests.conftest import RedisServer, free_port
from tests.engine.conftest import NodeFactory, claims

from .conftest import settle

MAX_STALENESS = 3.0


async def test_node_without_returning_heartbeats_goes_stale_and_fails_closed(
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
        fail_mode="closed",
    )
    try:
        token = claims()
        assert not node.is_revoked(token)
        assert not node.status()["stale"]

        # Private attribute, unavoidable: there is no public way to split one node's
        # publisher from its subscription.  The bus's BusConnection keeps the client it
        # publishes with in ``publisher``; point it at the other server.  Subscriptions
        # (``subscription()``) stay on the node's own Redis.
        connection = node.bus._connection
        old = connection.publisher
        connection.publisher = aredis.Redis.from_url(elsewhere.url, socket_timeout=2)
        await old.aclose()

        def stale_and_closed() -> bool:
            return bool(node.status()["stale"]) and node.is_revoked(token)

        went_stale = await settle(stale_and_closed, within=MAX_STALENESS + 5)
        status = node.status()
        assert went_stale, (
            f"no heartbeat has come back for {MAX_STALENESS + 5:g}s, yet the node is not "
            f"stale (seconds_since_sync={status['seconds_since_sync']}, "
            f"heartbeats={status['counters']['heartbeats']}, "
            f"reconnects={status['counters']['reconnects']}) and accepts tokens"
        )
    finally:
        await node.stop()
        elsewhere.kill()
