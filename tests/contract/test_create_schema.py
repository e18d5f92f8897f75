"""``Store.create_schema()`` (what ``revsync migrate`` runs) on every store: it works
with or without a connection, is idempotent, keeps the store's identity and data, and
``connect()`` finds the schema it made.  tests/security/test_postgres_roles.py proves
that a connect() to an existing PostgreSQL schema runs no DDL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from revsync.changes import ChangeRequest, Kind
from revsync.stores import store_from_url
from revsync.stores.base import Store

EXP = 2_000_000_000.0


async def test_create_schema_before_any_connect_then_nodes_use_it(store_url: str) -> None:
    migrate = store_from_url(store_url)
    await migrate.create_schema()
    await migrate.create_schema()  # idempotent
    node: Store = store_from_url(store_url)
    await node.connect()
    try:
        first = await node.position()
        change = await node.write(ChangeRequest(Kind.JTI, "j1", True, EXP, None))
        await node.create_schema()  # connected: on the node's own connections
        again = await node.position()
        assert again.store_id == first.store_id
        assert again.head == change.seq
        assert await node.get(Kind.JTI, "j1") == change
    finally:
        await node.close()
        await migrate.close()


async def test_sqlite_connect_leaves_an_existing_schema_alone(tmp_path: Path) -> None:
    """A file with every table is opened without DDL: a trigger-free way to see it is
    that an index dropped by hand stays dropped until ``create_schema``."""
    path = tmp_path / "r.db"
    url = f"sqlite:///{path}"
    await store_from_url(url).create_schema()
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX revsync_changes_expires_at")
    conn.commit()

    def has_index() -> bool:
        rows = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'revsync_changes_expires_at'"
        ).fetchall()
        return bool(rows)

    store = store_from_url(url)
    await store.connect()
    assert not has_index()  # connect() ran no DDL
    await store.create_schema()
    assert has_index()
    await store.close()

    conn.execute("DROP TABLE revsync_history")
    conn.commit()
    await store.connect()  # a missing table: SQLite creates the schema on connect
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'revsync_history'").fetchall()
    await store.close()
    conn.close()
