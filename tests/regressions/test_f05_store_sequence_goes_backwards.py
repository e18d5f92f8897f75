"""Issue 12, finding 5: a store whose sequence goes backwards (restored from a backup).

Nodes A and B run on a store at head H.  An operator takes a backup, more revocations
are written (head H+k) and read by the nodes, then the backup is restored into the
live store while the nodes keep running and keep their connections.  New
revocations are then written (through a fresh store object, as another process
would): the store numbers them H+1, H+2... again.  Every node's cursor is at H+k, so
its catch-ups read "every row after H+k", find nothing, and the new revocations are
ignored for good.  A node must notice that the store's head went behind its cursor
and re-read the store: within the resync interval (0.5 s here) plus generous slack,
both nodes refuse the new revoked tokens.

SQLite: backup and restore with the sqlite3 backup API, into the live file.  Redis:
DUMP of the store's keys at head H, then the keys deleted and RESTOREd.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aredis

from revsync import RevSync
from revsync.changes import ChangeRequest, Kind
from revsync.stores import store_from_url
from tests.conftest import copy_sqlite
from tests.engine.conftest import NodeFactory, claims, eventually

from .conftest import settle

RESYNC = 0.5
SLACK = 5.0


class SqliteBackup:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self.copy = path.with_name("backup.db")

    async def backup(self) -> None:
        await asyncio.to_thread(copy_sqlite, self.path, self.copy)

    async def restore(self) -> None:
        await asyncio.to_thread(copy_sqlite, self.copy, self.path)

    async def close(self) -> None:
        pass


class RedisBackup:
    def __init__(self, redis_url: str) -> None:
        self.prefix = f"rt-{uuid.uuid4().hex[:10]}"
        self.url = f"{redis_url}?prefix={self.prefix}"
        self.client = aredis.Redis.from_url(redis_url)
        self.saved: dict[bytes, bytes] = {}

    async def _keys(self) -> list[bytes]:
        return [k async for k in self.client.scan_iter(match=f"{{{self.prefix}}}:*")]

    async def backup(self) -> None:
        self.saved = {key: await self.client.dump(key) for key in await self._keys()}
        assert self.saved

    async def restore(self) -> None:
        keys = await self._keys()
        if keys:
            await self.client.delete(*keys)
        for key, value in self.saved.items():
            await self.client.restore(key, 0, value, replace=True)

    async def close(self) -> None:
        keys = await self._keys()
        if keys:
            await self.client.delete(*keys)
        await self.client.aclose()


@pytest.fixture(params=["sqlite", "redis"])
async def restorable(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> AsyncIterator[Any]:
    store = SqliteBackup(tmp_path / "revsync.db") if request.param == "sqlite" else None
    if store is None:
        store = RedisBackup(redis_url)
    yield store
    await store.close()


async def _revoke_all(node: RevSync, count: int) -> list[dict[str, Any]]:
    tokens = [claims() for _ in range(count)]
    for token in tokens:
        await node.revoke(token)
    return tokens


async def test_nodes_read_new_revocations_after_the_store_is_restored_from_a_backup(
    make_node: NodeFactory, restorable: Any
) -> None:
    url = restorable.url
    a = await make_node(url, resync_interval=RESYNC)
    b = await make_node(url, resync_interval=RESYNC)
    nodes = [a, b]
    before = await _revoke_all(a, 3)
    head = await a.store.head()
    await eventually(lambda: all(n.status()["store_seq"] >= head for n in nodes), within=5)
    await restorable.backup()  # at head H

    later = await _revoke_all(a, 5)  # H+1 .. H+5, read by both nodes
    ahead = await a.store.head()
    assert ahead == head + 5
    await eventually(lambda: all(n.status()["store_seq"] >= ahead for n in nodes), within=5)
    assert all(n.is_revoked(t) for n in nodes for t in before + later)

    await restorable.restore()  # the live store is back at H
    fresh = store_from_url(url)
    await fresh.connect()
    try:
        assert await fresh.head() == head, "the restore did not take the store back to H"
        new = [claims() for _ in range(3)]
        for token in new:
            request = ChangeRequest(Kind.JTI, str(token["jti"]), True, float(token["exp"]))
            change = await fresh.write(request)
            assert change.seq <= ahead  # numbers the nodes believe they have read
    finally:
        await fresh.close()

    def all_refused() -> bool:
        return all(n.is_revoked(t) for n in nodes for t in new)

    refused = await settle(all_refused, within=RESYNC + SLACK)
    assert refused, (
        f"revocations written after the restore (seq {head + 1}..) are ignored: "
        f"store_seq {[n.status()['store_seq'] for n in nodes]}, store head {head + len(new)}"
    )
    assert all(n.is_revoked(t) for n in nodes for t in before)
