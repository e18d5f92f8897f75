"""``revoke_many`` of large batches (docs/design.md, "Mass revocations"): what is durable
is applied here and announced as it becomes durable, whatever fails afterwards."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from structlog.testing import capture_logs

from revsync import PartialWriteError, StoreError
from revsync._extension import ANNOUNCE_EVERY
from revsync.stores.redis import RedisStore
from tests.engine.conftest import NodeFactory, claims, eventually


@pytest.fixture
def redis_store_url(redis_url: str) -> Iterator[str]:
    """A Redis store of the test's own (its keys deleted afterwards)."""
    prefix = f"mass-{uuid.uuid4().hex[:10]}"
    yield f"{redis_url}?prefix={prefix}"
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


async def test_a_batch_in_parts_is_announced_every_page_and_reaches_every_node(
    make_node: NodeFactory, redis_store_url: str
) -> None:
    url, _, prefix = redis_store_url.partition("?prefix=")
    count = 2 * ANNOUNCE_EVERY + 500
    a = await make_node(redis_store_url, store=RedisStore(url, prefix=prefix, write_chunk=1000))
    b = await make_node(redis_store_url, resync_interval=600)
    tokens = [(f"t{n}", 2e9) for n in range(count)]
    published = a.stats.published
    changes = await a.revoke_many(tokens)
    assert [c.seq for c in changes] == list(range(1, count + 1))
    # One announcement per ANNOUNCE_EVERY changes durable, and one at the end.
    assert a.stats.published - published == 3
    assert all(a.is_revoked({"jti": jti, "exp": 2e9}) for jti, _ in tokens)
    await eventually(lambda: b.revocations.jti_count == count, within=30)
    assert all(b.is_revoked({"jti": jti, "exp": 2e9}) for jti, _ in tokens[::97])


async def test_a_failed_part_keeps_what_is_durable_applied_and_announced(
    make_node: NodeFactory, redis_store_url: str
) -> None:
    url, _, prefix = redis_store_url.partition("?prefix=")
    a = await make_node(redis_store_url, store=RedisStore(url, prefix=prefix, write_chunk=50))
    b = await make_node(redis_store_url, resync_interval=600)
    # A row key of another type: the script of the third part fails in its reads.
    client = redis.Redis.from_url(url)
    try:
        client.set(f"{{{prefix}}}:row:jti:poison", "not a hash")
    finally:
        client.close()
    tokens = [claims() for _ in range(150)]
    tokens[120] = claims(jti="poison")
    with capture_logs() as logs, pytest.raises(PartialWriteError) as raised:
        await a.revoke_many(tokens)
    assert [c.seq for c in raised.value.written] == list(range(1, 101))
    assert all(a.is_revoked(t) for t in tokens[:100])
    assert not any(a.is_revoked(t) for t in tokens[100:])
    assert a.stats.store_write_failures == 1
    (log,) = [e for e in logs if e["event"] == "revsync.write_partly_failed"]
    assert (log["written"], log["requested"], log["last_seq"]) == (100, 150, 100)
    # Announced at once, not left to the next timed catch-up (600 s away).
    await eventually(lambda: all(b.is_revoked(t) for t in tokens[:100]), within=5)
    assert not any(b.is_revoked(t) for t in tokens[100:])
    assert await a.store.head() == 100


async def test_a_sql_batch_that_fails_leaves_nothing_anywhere(
    make_node: NodeFactory, sqlite_url: str
) -> None:
    a = await make_node(sqlite_url)
    b = await make_node(sqlite_url, resync_interval=600)
    conn = sqlite3.connect(urlsplit(sqlite_url).path[1:])
    try:
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON revsync_changes WHEN NEW.key = 'poison'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
        )
        conn.commit()
    finally:
        conn.close()
    tokens = [claims() for _ in range(150)]
    tokens[120] = claims(jti="poison")
    published = a.stats.published
    with pytest.raises(StoreError, match="poisoned row") as raised:
        await a.revoke_many(tokens)
    assert not isinstance(raised.value, PartialWriteError)
    assert not any(a.is_revoked(t) for t in tokens)
    assert a.stats.published == published
    assert await a.store.head() == 0
    ok = await a.revoke_many(tokens[:120])
    assert [c.seq for c in ok] == list(range(1, 121))
    await eventually(lambda: all(b.is_revoked(t) for t in tokens[:120]), within=5)
