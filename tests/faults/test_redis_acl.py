"""docs/security.md's least-privilege Redis ACL, checked against a real redis-server: a
node logged in as that user works end to end, and the user can do nothing else."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.conftest import RedisServer
from tests.engine.conftest import NodeFactory, claims, eventually

PASSWORD = "node-password-of-at-least-32-chars!"


def node_acl(channel: str) -> list[str]:
    """The rule list of docs/security.md for a node on ``channel``."""
    return [
        "on",
        f">{PASSWORD}",
        "resetchannels",
        f"&{channel}",
        "resetkeys",
        "-@all",
        "+subscribe",
        "+unsubscribe",
        "+publish",
        "+ping",
    ]


async def test_a_node_runs_with_the_least_privilege_acl(
    make_node: NodeFactory,
    redis_server: RedisServer,
    sqlite_url: str,
    channel: str,
    figures: dict[str, Any],
) -> None:
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "revsync-node", *node_acl(channel))
    url = f"redis://revsync-node:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    a = await make_node(sqlite_url, redis_url=url, event_key="e" * 32)
    b = await make_node(sqlite_url, redis_url=url, event_key="e" * 32, resync_interval=600)
    token = claims()
    await a.revoke(token)
    await eventually(lambda: b.is_revoked(token), within=2)
    await eventually(lambda: b.stats.heartbeats > 0, within=2)
    assert a.stats.publish_failures == 0

    limited = redis.Redis.from_url(url)
    denied = []
    for attempt in (
        lambda: limited.publish("another-channel", b"x"),
        lambda: limited.get("any-key"),
        lambda: limited.keys("*"),
        lambda: limited.config_get("*"),
        lambda: limited.client_kill_filter(_type="pubsub"),
        lambda: limited.flushall(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
        denied.append(True)
    limited.close()
    admin.close()
    figures.update(node_commands_denied=len(denied), propagation_ok=True)
