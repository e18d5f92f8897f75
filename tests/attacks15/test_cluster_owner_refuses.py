"""A Cluster whose channel's new primary refuses the subscription: the reader must
keep its backoff, not retry in a tight loop.

After a failover the slot's owner differs from the primary the last subscription was
made on, and the reader's wait between two attempts ends at once ("promoted").  That
must happen once, not after every failed attempt: a promoted replica that refuses new
clients (``maxclients`` reached, as a whole fleet reconnecting at once can make it) or
their subscription (ACLs are per node in a Cluster: one set on the primary only) would
otherwise be hammered by every node as fast as it can answer."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
import redis

from revsync import RevSync
from tests.engine.conftest import claims, eventually, make_app
from tests.scale.conftest import ClusterSetup


def _replica_of(setup: ClusterSetup, primary_port: int) -> Any:
    for server in setup.servers:
        info = server.client().info("replication")
        if info.get("role") == "slave" and int(info.get("master_port", 0)) == primary_port:
            return server
    raise AssertionError("no replica for the shard")


def _attempts(client: redis.Redis) -> int:
    """Connections the server accepted or turned away (maxclients)."""
    stats = client.info("stats")
    return int(stats["total_connections_received"]) + int(stats["rejected_connections"])


@pytest.mark.parametrize("refusal", ["maxclients", "acl"])
async def test_a_refusing_new_primary_is_retried_with_backoff(
    cluster_setup: ClusterSetup, tmp_path: Any, caplog: pytest.LogCaptureFixture, refusal: str
) -> None:
    setup = cluster_setup
    channel = f"revsync-att-{uuid.uuid4().hex[:8]}"
    node = RevSync(
        make_app(),
        redis_url=setup.url(),
        store_url=f"sqlite:///{tmp_path / 'revsync.db'}",
        channel=channel,
        heartbeat_interval=0.2,
        startup_timeout=20,
    )
    await node.start()
    # Opened before the refusal, and kept: it reads the new primary's counters.
    watcher = None
    try:
        old = setup.primary_for(channel)
        new = _replica_of(setup, old.port)
        watcher = new.client()
        if refusal == "acl":
            watcher.execute_command("ACL", "SETUSER", "default", "resetchannels")
        else:
            # Every new connection is refused (those open stay): a connection closing
            # meanwhile must not free a place for the node's resubscription.
            watcher.config_set("maxclients", 1)
        watcher.execute_command("CLUSTER", "FAILOVER")
        await eventually(lambda: setup.primary_for(channel).port == new.port, within=20)
        # Publishing moves redis-py's view to the new owner, and the subscription with it.
        # (The store is SQLite: revoke() succeeds, its publish fails or not.)
        await node.revoke(claims())
        await eventually(lambda: node.subscriber.bus_state == "disconnected", within=10)
        await asyncio.sleep(1.0)
        caplog.clear()
        before, cpu = _attempts(watcher), time.process_time()
        await asyncio.sleep(3.0)
        attempts = _attempts(watcher) - before
        busy = time.process_time() - cpu
        failures = [r for r in caplog.records if "subscriber_disconnected" in r.getMessage()]
        print(
            f"\n[{refusal}] in 3 s: {len(failures)} subscription attempts, {attempts} "
            f"connections to the new primary, {busy:.2f} s of CPU"
        )
        # The backoff (0.1 s doubling to 5 s, halved by jitter at worst): at most about
        # six attempts in 3 s, a few connections each; a tight loop makes hundreds.
        assert len(failures) <= 12, f"{len(failures)} attempts in 3 s: no backoff"
        assert attempts <= 40, f"{attempts} connections in 3 s: no backoff"
        assert node.subscriber.bus_state == "disconnected"
        # Once the new primary takes the node, it follows within its backoff (<= 5 s).
        if refusal == "acl":
            watcher.execute_command("ACL", "SETUSER", "default", "allchannels")
        else:
            watcher.config_set("maxclients", 10000)
        await eventually(lambda: node.subscriber.bus_state == "connected", within=10)
        token = claims()
        await node.revoke(token)
        assert node.is_revoked(token)
    finally:
        if watcher is not None:
            watcher.config_set("maxclients", 10000)
            watcher.close()
        await node.stop()
