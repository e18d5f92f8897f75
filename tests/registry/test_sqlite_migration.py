"""SQLite files created before the token registry: their CHECK refused kind 'token'."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from revsync.changes import ChangeRequest, Kind
from revsync.stores.sqlite import SqliteStore
from revsync.stores.tokens import TokenRecord

EXP = 2_000_000_000.0

_OLD_SCHEMA = """
CREATE TABLE revsync_meta (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
INSERT INTO revsync_meta (id, seq) VALUES (1, 2);
CREATE TABLE revsync_changes (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('jti', 'subject')),
    key TEXT NOT NULL,
    revoked INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    identity TEXT,
    cutoff REAL,
    created_at REAL NOT NULL,
    UNIQUE (kind, key)
);
CREATE INDEX revsync_changes_identity ON revsync_changes (identity, seq);
CREATE INDEX revsync_changes_expires_at ON revsync_changes (expires_at);
INSERT INTO revsync_changes VALUES (1, 'jti', 'old', 1, 2000000000.0, 'alice', NULL, 1.5);
INSERT INTO revsync_changes VALUES (2, 'subject', 'bob', 1, 2000000000.0, 'bob', 10.25, 2.5);
"""


def _old_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(_OLD_SCHEMA)
    conn.close()


def _table_sql(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        ((sql,),) = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'revsync_changes'"
        ).fetchall()
        indexes = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
                ("revsync_changes",),
            )
        }
    finally:
        conn.close()
    assert {"revsync_changes_identity", "revsync_changes_expires_at"} <= indexes
    text: str = sql
    return text


async def test_old_file_is_migrated_at_connect_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_file(path)
    before = None
    store = SqliteStore(path)
    await store.connect()
    try:
        before = await store.since(0)
        assert [(c.seq, c.kind, c.key, c.identity, c.cutoff, c.created_at) for c in before] == [
            (1, Kind.JTI, "old", "alice", None, 1.5),
            (2, Kind.SUBJECT, "bob", "bob", 10.25, 2.5),
        ]
        assert "'token'" in _table_sql(path)
        record = TokenRecord("t1", "alice", "access", None, 100.0, EXP)
        changes = await store.register([record])
        assert changes is not None
        assert [(c.seq, c.kind) for c in changes] == [(3, Kind.TOKEN)]
        assert [c.seq for c in await store.by_identity("alice")] == [1, 3]
        await store.write(ChangeRequest(Kind.JTI, "old", False, EXP))
        assert (await store.check())["rows"] == 3
    finally:
        await store.close()


async def test_concurrent_connects_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_file(path)
    stores = [SqliteStore(path) for _ in range(4)]
    await asyncio.gather(*(s.connect() for s in stores))
    try:
        assert [c.key for c in await stores[3].since(0)] == ["old", "bob"]
        await stores[1].register([TokenRecord("t1", "alice", "access", None, 100.0, EXP)])
        assert await stores[2].head() == 3
    finally:
        for s in stores:
            await s.close()


async def test_current_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    store = SqliteStore(path)
    await store.connect()
    await store.close()
    sql = _table_sql(path)
    await store.connect()
    await store.close()
    assert _table_sql(path) == sql
