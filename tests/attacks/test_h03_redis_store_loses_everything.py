"""Holds (probe): the Redis store's server is killed and restarted empty (no
persistence); every node notices at its next catch-up and follows the new store.

docs/design.md, "When the store goes back in time": the Redis store's identity key is
re-created with a new id when Redis lost everything, so every node re-reads the whole
store, says so (``store_resets``), drops what the store lost (documented: "Revocations
the store lost are lost everywhere") and learns every new revocation, although the new
ones reuse sequence numbers the nodes have read.  Two nodes, store on a private
redis-server killed with SIGKILL, bus on the shared Redis.
"""

from __future__ import annotations

import uuid

from revsync.stores.base import StoreError
from tests.conftest import RedisServer
from tests.engine.conftest import NodeFactory, claims, eventually


async def test_nodes_follow_a_redis_store_that_lost_everything(
    make_node: NodeFactory, redis_server: RedisServer
) -> None:
    url = f"{redis_server.url}?prefix=lost-{uuid.uuid4().hex[:6]}"
    a = await make_node(url, resync_interval=0.3)
    b = await make_node(url, resync_interval=0.3)
    old = [claims() for _ in range(3)]
    for token in old:
        await a.revoke(token)
    await eventually(lambda: all(b.is_revoked(t) for t in old), within=3)

    redis_server.restart()  # SIGKILL, then an empty server on the same port
    await eventually(lambda: a.stats.store_resets >= 1 and b.stats.store_resets >= 1, within=10)

    new = claims()
    try:
        change = await a.revoke(new)
    except StoreError:  # the pooled connection died with the server: nothing written
        change = await a.revoke(new)
    assert change.seq == 1  # a number both nodes had read before
    await eventually(lambda: a.is_revoked(new) and b.is_revoked(new), within=3)
    assert not any(n.is_revoked(t) for n in (a, b) for t in old)
    assert all(n.status()["ready"] for n in (a, b))
