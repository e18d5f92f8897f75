"""A mass revocation written in parts (Redis, small parts) while another node revokes
the same targets with later and earlier expiries and unrevokes some of them
(docs/design.md, "Mass revocations"): once they are done and have caught up, every
node holds exactly the store's live rows, whichever change of a target came last.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator

import pytest
import redis

from revsync._replica import Replica
from revsync._revocation_set import RevocationSet
from revsync._stats import SyncStats
from revsync.stores.redis import RedisStore
from tests.engine.conftest import NodeFactory, claims, eventually

COUNT = 3_000


@pytest.fixture
def redis_store_url(redis_url: str) -> Iterator[str]:
    prefix = f"att17-{uuid.uuid4().hex[:10]}"
    yield f"{redis_url}?prefix={prefix}"
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


async def test_parts_and_concurrent_single_changes_end_equal_everywhere(
    make_node: NodeFactory, redis_store_url: str
) -> None:
    url, _, prefix = redis_store_url.partition("?prefix=")
    a = await make_node(redis_store_url, store=RedisStore(url, prefix=prefix, write_chunk=50))
    b = await make_node(redis_store_url)
    c = await make_node(redis_store_url, resync_interval=600)
    base = 2e9
    tokens = [(f"t{n}", base) for n in range(COUNT)]
    rng = random.Random(17)
    touched = rng.sample(range(COUNT), 300)

    async def meddle() -> None:
        for n in touched:
            jti = f"t{n}"
            choice = n % 3
            if choice == 0:
                await b.revoke(claims(jti=jti, exp=base + 500))  # later: wins
            elif choice == 1:
                await b.revoke(claims(jti=jti, exp=base - 500))  # earlier: never shortens
            else:
                await b.unrevoke(jti)
            await asyncio.sleep(0)

    await asyncio.gather(a.revoke_many(tokens), meddle())
    reference = Replica(b.store, RevocationSet(), SyncStats())
    await reference.catch_up()
    expected = reference.revocations.snapshot_jtis()
    # The merge rules held in the store: never an expiry below the batch's, once revoked.
    assert all(e >= base for e in expected.values())
    for node in (a, b, c):
        node.request_catch_up()
    await eventually(
        lambda: all(n.revocations.snapshot_jtis() == expected for n in (a, b, c)), within=20
    )
    for node in (a, b, c):
        assert all(node.is_revoked({"jti": j, "exp": base}) == (j in expected) for j, _ in tokens)
