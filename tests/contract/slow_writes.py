"""Slow and aborted write transactions, made by the database itself.

A trigger on ``revsync_changes`` runs inside every write transaction after the
transaction bumped the counter (so after its seqs were handed out): it holds the
transaction open for a random while, and aborts it when a written key ends in
``ABORT``.  The stores carry no test hooks; the delay and the rollback happen in the
real transaction, on the real connection.  PostgreSQL sleeps (``pg_sleep``); SQLite,
which cannot sleep in SQL, counts to a random number instead.
"""

from __future__ import annotations

import sqlite3
from urllib.parse import urlsplit

import asyncpg

ABORT = "-abort"
"""A key ending in this aborts the write transaction that writes it."""
ABORTED = "test abort"
"""In the message of the StoreError an aborted write raises."""


async def make_postgres_writes_slow(url: str, delay: str) -> None:
    """Install the trigger in the schema of ``url``; ``delay`` is a SQL expression in
    seconds, evaluated per written row (e.g. ``random() * 0.004``)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"""
            CREATE FUNCTION revsync_test_slow() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_sleep({delay});
                IF NEW.key LIKE '%{ABORT}' THEN
                    RAISE EXCEPTION '{ABORTED} of %', NEW.key;
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER revsync_test_slow BEFORE INSERT ON revsync_changes
                FOR EACH ROW EXECUTE FUNCTION revsync_test_slow();
        """)
    finally:
        await conn.close()


def make_sqlite_writes_slow(url: str, max_count: int = 30_000) -> None:
    """Install the trigger in the file of ``url``: each written row counts to a random
    number below ``max_count`` (about 1 ms per 10,000) before it is written."""
    conn = sqlite3.connect(urlsplit(url).path[1:], isolation_level=None)
    try:
        # A trigger cannot hold a WITH clause, but it can read a view that does.
        conn.executescript(f"""
            CREATE VIEW revsync_test_burn AS
                WITH RECURSIVE n(i) AS (
                    SELECT 1 UNION ALL SELECT i + 1 FROM n
                    WHERE i < 1 + abs(random()) % {int(max_count)}
                )
                SELECT count(*) FROM n;
            CREATE TRIGGER revsync_test_slow BEFORE INSERT ON revsync_changes BEGIN
                SELECT * FROM revsync_test_burn;
                SELECT RAISE(ABORT, '{ABORTED}') WHERE NEW.key LIKE '%{ABORT}';
            END;
        """)  # noqa: S608 - only this module's constants go in
    finally:
        conn.close()
