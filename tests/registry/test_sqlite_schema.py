"""The SQLite schema: created once, with the token registry's kind, and left alone after."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from revsync.stores.sqlite import SqliteStore


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


async def test_current_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    store = SqliteStore(path)
    await store.connect()
    await store.close()
    sql = _table_sql(path)
    assert "'issued'" in sql
    await store.connect()
    await store.close()
    assert _table_sql(path) == sql
