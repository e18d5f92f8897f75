"""The Redis store's snapshot index on a real Redis Cluster (redis+cluster://).

The index's keys share the store's ``{prefix}`` hash tag, so they live in its slot,
on the shard that holds its rows: every write keeps it there, a snapshot reads it,
and a store without it is indexed by its first snapshot, all through the Cluster
client.
"""

from __future__ import annotations

import time
import uuid

from revsync.changes import ChangeRequest, Kind
from revsync.stores import store_from_url
from revsync.stores.redis import RedisStore
from tests.contract.test_redis_snapshot_index import (
    assert_indexed,
    assert_snapshot_is_since,
    index_of,
)
from tests.scale.conftest import ClusterSetup


def _shard_keys(setup: ClusterSetup, store: RedisStore) -> list[bytes]:
    """The store's keys on the primary of its slot."""
    client = setup.primary_for(store._keys.base).client()
    try:
        return list(client.scan_iter(match=f"{store._keys.base}:*", count=1000))
    finally:
        client.close()


async def test_the_index_lives_in_the_store_slot_and_is_kept_there(
    cluster_setup: ClusterSetup,
) -> None:
    now = time.time()
    store = store_from_url(f"{cluster_setup.url()}?prefix=ix-{uuid.uuid4().hex[:6]}")
    assert isinstance(store, RedisStore)
    await store.connect()
    try:
        await store.write_many([ChangeRequest(Kind.JTI, f"j{n}", True, now + n) for n in range(30)])
        await store.write(ChangeRequest(Kind.JTI, "j3", False, 0.0))
        await store.write(ChangeRequest(Kind.IDENTITY, "u", True, now + 60, cutoff=now))
        await assert_indexed(store)
        await assert_snapshot_is_since(store, now)
        keys = set(_shard_keys(cluster_setup, store))
        k = store._keys
        for key in (k.index, k.indexed_revoked, k.indexed_others):
            assert key.encode() in keys  # on the shard of the rows, under the hash tag
        # A store without the index: the first snapshot through the Cluster builds it.
        client = cluster_setup.primary_for(k.base).client()
        try:
            client.delete(k.index, k.indexed_revoked, k.indexed_registered, k.indexed_others)
        finally:
            client.close()
        await assert_snapshot_is_since(store, now)
        await assert_indexed(store)
        assert len(index_of(store)["revoked"]) == 29
    finally:
        await store.close()
