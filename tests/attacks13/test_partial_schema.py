"""A partially created schema: the counter table (``revsync_meta``) dropped, by a bad
migration or a hand-run cleanup, while revocations are in ``revsync_changes``.

A node connecting with a role that may create tables re-creates the missing table
(docs/security.md) -- with the counter at 0, behind rows numbered up to 5.  The next
writes get seqs 1, 2... that rows already hold (``Store.check()`` then reports rows
sharing a seq) and every node that had read seq 5 re-reads the whole store at each
catch-up ("store_history_lost") until the counter passes its old head.  Expected:
either refuse the partial schema (naming ``revsync migrate``) or start the counter
at the rows' highest seq; never hand out a seq that is already taken.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import asyncpg
import pytest
from quart import Quart

import revsync.testing
from revsync.stores import StoreError, store_from_url


def _app() -> Quart:
    app = Quart(__name__)
    app.config.update(JWT_SECRET_KEY="x" * 32, JWT_BLACKLIST_ENABLED=True)
    return app


async def _attack(store_url: str, drop) -> None:  # type: ignore[no-untyped-def]
    async with revsync.testing.running(_app(), store_url=store_url) as ext:
        for i in range(5):
            last = await ext.revoke_jti(f"j{i}", expires_at=time.time() + 600)
    assert last.seq == 5
    await drop()
    store = store_from_url(store_url)
    try:
        try:
            await store.connect()
        except StoreError as exc:  # refusing the partial schema is a correct answer
            refused = str(exc)
        else:
            refused = None
        if refused is not None:
            assert "revsync migrate" in refused
            return
        async with revsync.testing.running(_app(), store_url=store_url) as ext:
            change = await ext.revoke_jti("after", expires_at=time.time() + 600)
        assert change.seq > 5, change.seq
        await store.check()  # no two rows share a seq
    finally:
        await store.close()


async def test_sqlite_counter_dropped(tmp_path: Path) -> None:
    db = tmp_path / "partial.db"

    async def drop() -> None:
        with sqlite3.connect(db) as con:
            con.execute("DROP TABLE revsync_meta")

    await _attack(f"sqlite:///{db}", drop)


async def test_postgres_counter_dropped(postgres_schema_url: str) -> None:
    async def drop() -> None:
        conn = await asyncpg.connect(postgres_schema_url)
        try:
            await conn.execute("DROP TABLE revsync_meta")
        finally:
            await conn.close()

    await _attack(postgres_schema_url, drop)


@pytest.mark.parametrize("table", ["revsync_store", "revsync_history"])
async def test_sqlite_other_table_dropped_keeps_seqs_unique(tmp_path: Path, table: str) -> None:
    db = tmp_path / "partial.db"

    async def drop() -> None:
        with sqlite3.connect(db) as con:
            con.execute(f"DROP TABLE {table}")

    await _attack(f"sqlite:///{db}", drop)
