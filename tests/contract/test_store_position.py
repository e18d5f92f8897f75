"""Every store's identity, epoch, head and history ring (``Store.position``, ``history``,
``new_epoch``): what a node relies on to notice a store that went back in time."""

from __future__ import annotations

import pytest
import redis

from revsync.changes import ChangeRequest, Kind
from revsync.stores import Store, store_from_url
from revsync.stores._common import HISTORY_SLOTS

from .conftest import StoreFactory, backend_url

EXP = 2_000_000_000.0


def jti(key: str) -> ChangeRequest:
    return ChangeRequest(Kind.JTI, key, True, EXP, None)


async def test_a_new_store_has_an_identity_epoch_one_and_head_zero(store: Store) -> None:
    position = await store.position()
    assert len(position.store_id) >= 16
    assert position.epoch == 1
    assert position.head == 0
    assert position.stamp is None
    assert await store.history(0) is None


async def test_the_identity_is_the_same_for_every_connection(
    store: Store, store_factory: StoreFactory
) -> None:
    first = await store.position()
    other = await store_factory()
    assert (await other.position()).store_id == first.store_id
    await store.close()
    await store.connect()
    assert (await store.position()).store_id == first.store_id


async def test_each_write_records_its_stamp_in_the_history_ring(store: Store) -> None:
    one = await store.write(jti("a"))
    batch = await store.write_many([jti("b"), jti("c"), jti("d")])
    position = await store.position()
    assert position.head == batch[-1].seq
    assert position.stamp == batch[-1].created_at
    assert await store.history(one.seq) == (one.seq, one.seq, one.created_at)
    assert await store.history(batch[-1].seq) == (
        batch[0].seq,
        batch[-1].seq,
        batch[-1].created_at,
    )
    # A write is filed in the slot of its last seq only.
    assert await store.history(batch[0].seq) is None


async def test_the_ring_reuses_slots_modulo_its_size(
    store: Store, backend: str, store_url: str
) -> None:
    if backend == "redis":  # one script run for the whole batch, not parts of WRITE_CHUNK
        await store.close()
        store = store_from_url(store_url, write_chunk=HISTORY_SLOTS)
        await store.connect()
    first = await store.write(jti("a"))
    # One write handing out HISTORY_SLOTS seqs lands its last one in the same slot.
    batch = await store.write_many([jti(f"k{n}") for n in range(HISTORY_SLOTS)])
    assert batch[-1].seq == first.seq + HISTORY_SLOTS
    assert await store.history(first.seq) == (
        batch[0].seq,
        batch[-1].seq,
        batch[-1].created_at,
    )
    await store.close()


async def test_a_new_epoch_keeps_the_identity_and_the_head(store: Store) -> None:
    change = await store.write(jti("a"))
    before = await store.position()
    after = await store.new_epoch()
    assert after.store_id == before.store_id
    assert after.epoch == before.epoch + 1
    assert after.head == change.seq
    assert await store.position() == after


async def test_a_redis_store_that_lost_everything_gets_a_new_identity(
    request: pytest.FixtureRequest,
) -> None:
    """Redis restarted without persistence: the identity key is gone, and made anew."""
    url = backend_url(request, "redis")
    store = store_from_url(url)
    await store.connect()
    try:
        before = await store.position()
        await store.write(jti("a"))
        prefix = url.partition("prefix=")[2]
        client = redis.Redis.from_url(url.partition("?")[0])
        try:
            client.delete(*client.scan_iter(match=f"{{{prefix}}}:*"))
        finally:
            client.close()
        after = await store.position()
    finally:
        await store.close()
    assert after.store_id != before.store_id
    assert after.epoch == 1
    assert after.head == 0
