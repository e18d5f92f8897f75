"""docs/security.md's least-privilege Redis ACL, checked against a real redis-server: a
node logged in as that user works end to end, and the user can do nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from tests.attacks.acl import node_acl as acl_rules
from tests.conftest import RedisServer
from tests.engine.conftest import NodeFactory, claims, eventually

PASSWORD = "node-password-of-at-least-32-chars!"
STORE_PASSWORD = "store-password-of-at-least-32-chars"
DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def node_acl(channel: str) -> list[str]:
    """The rule list of docs/security.md for a node on ``channel``."""
    return acl_rules(channel, PASSWORD)


def store_acl(prefix: str) -> list[str]:
    """The rule list of docs/security.md for the Redis store under ``prefix``."""
    return [
        "on",
        f">{STORE_PASSWORD}",
        "resetchannels",
        "resetkeys",
        f"~{{{prefix}}}:*",
        "-@all",
        "+@read",
        "+@write",
        "+@scripting",
        "-@dangerous",
        "+ping",
    ]


def test_the_doc_gives_these_rules() -> None:
    text = " ".join(DOC.read_text().split())
    node = " ".join(node_acl("revsync")).replace(PASSWORD, "NODE_PASSWORD")
    store = " ".join(store_acl("revsync")).replace(STORE_PASSWORD, "STORE_PASSWORD")
    assert f"ACL SETUSER revsync-node {node}" in text
    assert f"ACL SETUSER revsync-store {store}" in text


@pytest.mark.parametrize("store", ["sqlite", "redis"])
async def test_a_node_runs_with_the_least_privilege_acl(
    make_node: NodeFactory,
    redis_server: RedisServer,
    sqlite_url: str,
    channel: str,
    figures: dict[str, Any],
    store: str,
) -> None:
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "revsync-node", *node_acl(channel))
    url = f"redis://revsync-node:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    store_url = sqlite_url
    if store == "redis":
        admin.execute_command("ACL", "SETUSER", "revsync-store", *store_acl("revsync"))
        store_url = (
            f"redis://revsync-store:{STORE_PASSWORD}@127.0.0.1:{redis_server.port}/0?prefix=revsync"
        )
    a = await make_node(store_url, redis_url=url, event_key="e" * 32)
    b = await make_node(store_url, redis_url=url, event_key="e" * 32, resync_interval=600)
    token = claims()
    await a.revoke(token)
    await eventually(lambda: b.is_revoked(token), within=2)
    await eventually(lambda: b.stats.heartbeats > 0, within=2)
    assert a.stats.publish_failures == 0
    assert a.stats.resync_failures == 0
    assert b.stats.resync_failures == 0
    # A node started afterwards catches up from the store (its snapshot) with the users.
    c = await make_node(store_url, redis_url=url, event_key="e" * 32, resync_interval=600)
    assert c.is_revoked(token)
    assert not c.is_revoked(claims())
    if store == "redis":
        _store_user_is_confined(store_url, channel)

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


def _store_user_is_confined(url: str, channel: str) -> None:
    limited = redis.Redis.from_url(url.partition("?")[0])
    try:
        assert limited.exists("{revsync}:seq") == 1  # its own keys: allowed
        for attempt in (
            lambda: limited.get("another-key"),
            lambda: limited.set("{other}:seq", "1"),
            lambda: limited.keys("*"),
            lambda: limited.config_get("*"),
            lambda: limited.flushall(),
            lambda: limited.publish(channel, b"x"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                attempt()
    finally:
        limited.close()
