"""PostgresStore: revocations in PostgreSQL, for deployments that already run one.

Every write runs in one transaction that first does
``UPDATE revsync_meta SET seq = seq + n RETURNING seq``.  The row lock on the
counter serialises writers, so numbers are committed in the order they are handed
out, and a rolled-back write gives its numbers back: no holes, no late commits
behind a reader's back (a plain SEQUENCE would allow both).

The schema is created on ``connect()`` under a transaction-scoped advisory lock, so
several nodes starting at once do not race on ``CREATE TABLE IF NOT EXISTS``.  The
tables go in the first schema of the connection's ``search_path`` (settable in the
URL: ``postgresql://host/db?search_path=revsync``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from revsync.changes import Change, ChangeRequest, Kind
from revsync.stores.base import HistoryEntry, StoreError, StorePosition
from revsync.stores.common import (
    HISTORY_SLOTS,
    KINDS,
    apply_all,
    check_figures,
    check_request,
    mask_url,
    translate,
)
from revsync.stores.tokens import (
    TokenRecord,
    family_expiry,
    records_from_rows,
    request_for,
    row_for,
)

__all__ = ["PostgresStore", "from_url"]

_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # e.g. a server-closed connection caught mid-protocol
    OSError,
    TimeoutError,
)
_LOST = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, server restart
    OSError,
)
"""Errors after which a pooled connection is suspect: expire them all, and retry reads once."""
_SCHEMA_LOCK = 0x7265_7673_796E_6301  # "revsync" + 1: one advisory lock id for schema setup

_SCHEMA = """
CREATE TABLE IF NOT EXISTS revsync_meta (
    id smallint PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL
);
INSERT INTO revsync_meta (id, seq) VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS revsync_changes (
    seq bigint NOT NULL,
    kind text NOT NULL CHECK (kind IN ('jti', 'subject', 'token')),
    key text NOT NULL,
    revoked boolean NOT NULL,
    expires_at double precision NOT NULL,
    identity text,
    cutoff double precision,
    created_at double precision NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE UNIQUE INDEX IF NOT EXISTS revsync_changes_seq ON revsync_changes (seq);
CREATE INDEX IF NOT EXISTS revsync_changes_identity ON revsync_changes (identity, seq);
CREATE INDEX IF NOT EXISTS revsync_changes_expires_at ON revsync_changes (expires_at);
CREATE TABLE IF NOT EXISTS revsync_tokens (
    jti text PRIMARY KEY,
    identity text NOT NULL,
    type text NOT NULL,
    family text,
    issued_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    metadata text NOT NULL,
    rotated boolean NOT NULL,
    seq bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS revsync_tokens_identity ON revsync_tokens (identity, seq);
CREATE INDEX IF NOT EXISTS revsync_tokens_family ON revsync_tokens (family);
CREATE INDEX IF NOT EXISTS revsync_tokens_expires_at ON revsync_tokens (expires_at);
CREATE TABLE IF NOT EXISTS revsync_families (
    family text PRIMARY KEY,
    revoked boolean NOT NULL,
    expires_at double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS revsync_families_expires_at ON revsync_families (expires_at);
-- Tables created before the token registry only allowed 'jti' and 'subject'.  Altered
-- only then: an ALTER on every connect would lock out (and deadlock with) writers.
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint
               WHERE conname = 'revsync_changes_kind_check'
                 AND conrelid = 'revsync_changes'::regclass
                 AND pg_get_constraintdef(oid) NOT LIKE '%token%') THEN
        ALTER TABLE revsync_changes DROP CONSTRAINT revsync_changes_kind_check;
        ALTER TABLE revsync_changes ADD CONSTRAINT revsync_changes_kind_check
            CHECK (kind IN ('jti', 'subject', 'token')) NOT VALID;
    END IF;
END $$;
"""

# The store's identity and generation (revsync.stores.base.StorePosition).
_IDENTITY_SCHEMA = """
CREATE TABLE IF NOT EXISTS revsync_store (
    id smallint PRIMARY KEY CHECK (id = 1),
    store_id text NOT NULL,
    epoch bigint NOT NULL
);
INSERT INTO revsync_store (id, store_id, epoch) VALUES (1, '{store_id}', 1) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS revsync_history (
    slot integer PRIMARY KEY,
    first bigint NOT NULL,
    seq bigint NOT NULL,
    stamp double precision NOT NULL
);
"""
_POSITION = (
    "SELECT s.store_id, s.epoch, m.seq, (SELECT h.stamp FROM revsync_history h"
    " WHERE h.slot = m.seq % $1 AND h.seq = m.seq)"
    " FROM revsync_store s, revsync_meta m WHERE s.id = 1 AND m.id = 1"
)
_RECORD_HISTORY = (
    "INSERT INTO revsync_history (slot, first, seq, stamp) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (slot) DO UPDATE"
    " SET first = EXCLUDED.first, seq = EXCLUDED.seq, stamp = EXCLUDED.stamp"
)

_LOAD = """
SELECT seq, kind, key, revoked, expires_at, identity, cutoff, created_at FROM revsync_changes
WHERE (kind, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""

_UPSERT = """
INSERT INTO revsync_changes (seq, kind, key, revoked, expires_at, identity, cutoff, created_at)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::boolean[],
                     $5::float8[], $6::text[], $7::float8[], $8::float8[])
ON CONFLICT (kind, key) DO UPDATE SET
    seq = EXCLUDED.seq, revoked = EXCLUDED.revoked, expires_at = EXCLUDED.expires_at,
    identity = EXCLUDED.identity, cutoff = EXCLUDED.cutoff, created_at = EXCLUDED.created_at
"""


_SELECT = (
    "SELECT seq, kind, key, revoked, expires_at, identity, cutoff, created_at FROM revsync_changes"
)
_GET = f"{_SELECT} WHERE kind = $1 AND key = $2"
_SINCE = f"{_SELECT} WHERE seq > $1 ORDER BY seq LIMIT $2"
_BY_IDENTITY = f"{_SELECT} WHERE identity = $1 ORDER BY seq"


_RECORD_SELECT = (
    "SELECT jti, identity, type, family, issued_at, expires_at, metadata, rotated, seq"
    " FROM revsync_tokens"
)
_RECORD = _RECORD_SELECT + " WHERE jti = $1"
_RECORDS_BY = {
    "identity": _RECORD_SELECT + " WHERE identity = $1 ORDER BY seq",
    "family": _RECORD_SELECT + " WHERE family = $1 ORDER BY seq",
}
_INSERT_RECORD = (
    "INSERT INTO revsync_tokens"
    " (jti, identity, type, family, issued_at, expires_at, metadata, rotated, seq)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (jti) DO NOTHING"
)
# Creates or extends (a family row lives as long as its longest-lived member) and
# locks the row until the transaction ends; returns the latest committed mark.
_EXTEND_FAMILY = (
    "INSERT INTO revsync_families (family, revoked, expires_at) VALUES ($1, false, $2)"
    " ON CONFLICT (family) DO UPDATE"
    " SET expires_at = greatest(revsync_families.expires_at, EXCLUDED.expires_at)"
    " RETURNING revoked"
)
_REVOKE_FAMILY = (
    "INSERT INTO revsync_families (family, revoked, expires_at) VALUES"
    " ($1, true, coalesce((SELECT max(expires_at) FROM revsync_tokens WHERE family = $1), 0))"
    " ON CONFLICT (family) DO UPDATE SET revoked = true"
)


class _Refused(Exception):
    """Raised inside a rotation's transaction to roll it back: its compare-and-set failed."""


def from_url(url: str, **options: Any) -> PostgresStore:
    """A store for ``postgresql://user:password@host:port/database?search_path=...``."""
    netloc = urlsplit(url).netloc
    if "," not in netloc.rpartition("@")[2]:  # asyncpg also takes host1:port1,host2:port2
        urlsplit(url).port  # noqa: B018 - raises ValueError for a malformed port
    return PostgresStore(url, **options)


class PostgresStore:
    """A revocation store in PostgreSQL, over an asyncpg pool (see the module docstring)."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
    ) -> None:
        self._dsn = dsn
        self.url = mask_url(dsn)
        self._pool_size = (min_size, max_size)
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None

    async def connect(self) -> None:
        """Open the pool and create the schema if it does not exist."""
        if self._pool is not None:
            return
        with translate(_ERRORS, lambda: f"cannot connect to PostgreSQL store {self.url}"):
            async with asyncio.timeout(self._connect_timeout * 2):
                pool = await asyncpg.create_pool(
                    self._dsn,
                    timeout=self._connect_timeout,
                    command_timeout=self._command_timeout,
                    min_size=self._pool_size[0],
                    max_size=self._pool_size[1],
                )
            try:
                acquire = pool.acquire(timeout=self._connect_timeout)
                async with acquire as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
                    await conn.execute(_SCHEMA)
                    await conn.execute(_IDENTITY_SCHEMA.format(store_id=uuid.uuid4().hex))
            except BaseException:
                pool.terminate()
                raise
        self._pool = pool

    async def close(self) -> None:
        """Close the pool, waiting at most a few seconds for busy connections."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(self._connect_timeout):
                await pool.close()
        except _ERRORS:
            pool.terminate()
        except asyncio.CancelledError:
            pool.terminate()
            raise

    def _acquire(self) -> Any:
        if self._pool is None:
            msg = f"PostgreSQL store {self.url} is not connected; call connect() first"
            raise StoreError(msg)
        return self._pool.acquire(timeout=self._connect_timeout)

    async def write(self, request: ChangeRequest) -> Change:
        """Write one change (see ``Store.write``)."""
        return (await self.write_many([request]))[0]

    async def write_many(self, requests: Sequence[ChangeRequest]) -> list[Change]:
        """Write several changes in one transaction, numbered consecutively."""
        checked = [check_request(request) for request in requests]
        if not checked:
            return []
        async with self._errors("write to"), self._acquire() as conn, conn.transaction():
            return await self._apply(conn, checked)

    async def _apply(self, conn: Any, checked: list[ChangeRequest]) -> list[Change]:
        """Number and merge ``checked`` inside the caller's transaction."""
        head = await conn.fetchval(
            "UPDATE revsync_meta SET seq = seq + $1 WHERE id = 1 RETURNING seq",
            len(checked),
        )
        if head is None:
            msg = f"PostgreSQL store {self.url} has no sequence counter row"
            raise StoreError(msg)
        targets = {(request.kind, request.key) for request in checked}
        kinds, keys = zip(*((kind.value, key) for kind, key in targets), strict=True)
        old = {(c.kind, c.key): c for c in _changes(await conn.fetch(_LOAD, kinds, keys))}
        now = time.time()
        changes, final = apply_all(old, checked, head - len(checked) + 1, now)
        columns = list(zip(*final, strict=True))
        columns[1] = tuple(kind.value for kind in columns[1])
        await conn.execute(_UPSERT, *columns)
        first = head - len(checked) + 1
        await conn.execute(_RECORD_HISTORY, head % HISTORY_SLOTS, first, head, now)
        return changes

    # -- the token registry (revsync.registry) ------------------------------------------

    async def register(
        self, records: Sequence[TokenRecord], *, rotate: str | None = None
    ) -> list[Change] | None:
        """Record issued tokens and their ``Kind.TOKEN`` changes in one transaction.

        With ``rotate``, first mark that refresh jti rotated, compare-and-set (the row
        lock serialises two nodes rotating the same token): if it is unknown, already
        rotated or its family revoked, write nothing and return None.  Records with a
        family create or extend its row (``revoke_family``).
        """
        requests = [check_request(request_for(record)) for record in records]
        try:
            async with self._errors("write to"), self._acquire() as conn, conn.transaction():
                return await self._register(conn, records, requests, rotate)
        except _Refused:
            return None

    async def _register(
        self,
        conn: Any,
        records: Sequence[TokenRecord],
        requests: list[ChangeRequest],
        rotate: str | None,
    ) -> list[Change]:
        """``register`` inside its transaction; raises _Refused to roll it back."""
        families = family_expiry(records)
        family = None
        if rotate is not None:
            sql = "SELECT family, expires_at FROM revsync_tokens WHERE jti = $1"
            current = await conn.fetchrow(sql, rotate)
            if current is None:
                raise _Refused
            family = current["family"]
            if family is not None:
                expires = max(current["expires_at"], families.get(family, -math.inf))
                families = dict(sorted({**families, family: expires}.items()))
        # Family rows are locked before the counter row, in one order, so two writers
        # never wait on each other in a cycle.  The rotated token's family row stays
        # locked to the end: a concurrent revoke_family waits for this rotation and
        # then reads its successor, or marked the family first and this sees the mark.
        revoked = set()
        for name, expires_at in families.items():
            if await conn.fetchval(_EXTEND_FAMILY, name, expires_at):
                revoked.add(name)
        if rotate is not None:
            if family in revoked:
                raise _Refused
            status = await conn.execute(
                "UPDATE revsync_tokens SET rotated = true WHERE jti = $1 AND NOT rotated", rotate
            )
            if status != "UPDATE 1":
                raise _Refused
        if not requests:
            return []
        changes = await self._apply(conn, requests)
        rows = [row_for(r, c.seq) for r, c in zip(records, changes, strict=True)]
        await conn.executemany(_INSERT_RECORD, rows)
        return changes

    async def revoke_family(self, family: str) -> list[TokenRecord]:
        """Mark a refresh family revoked, so no rotation of its tokens succeeds any more,
        and return its records, read in the same transaction after the mark."""
        # Read committed, whatever the server's default: the mark waits for a rotation
        # holding the family row, and the read, a statement of its own, then sees it.
        async with (
            self._errors("write to"),
            self._acquire() as conn,
            conn.transaction(isolation="read_committed"),
        ):
            await conn.execute(_REVOKE_FAMILY, family)
            rows = await conn.fetch(_RECORDS_BY["family"], family)
        return records_from_rows(rows)

    async def token(self, jti: str) -> TokenRecord | None:
        """The registry record of one jti, or None."""
        sql = _RECORD
        found = records_from_rows(await self._fetch(sql, jti))
        return found[0] if found else None

    async def tokens(
        self, *, identity: str | None = None, family: str | None = None
    ) -> list[TokenRecord]:
        """Registry records of one identity or one refresh family, ascending by seq."""
        column, value = ("identity", identity) if family is None else ("family", family)
        sql = _RECORDS_BY[column]
        return records_from_rows(await self._fetch(sql, value))

    @contextlib.asynccontextmanager
    async def _errors(self, what: str) -> AsyncIterator[None]:
        """Translate driver errors; after a lost connection, have the pool replace them all."""
        with translate(_ERRORS, lambda: f"{what} PostgreSQL store {self.url} failed"):
            try:
                yield
            except _LOST:
                if self._pool is not None:
                    await self._pool.expire_connections()
                raise

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        """Run a read, once more on a fresh connection if the first one was lost."""
        for attempt in range(2):
            try:
                async with self._errors("read from"), self._acquire() as conn:
                    rows: list[Any] = await conn.fetch(sql, *args)
                    return rows
            except StoreError as exc:
                if attempt or not isinstance(exc.__cause__, _LOST):
                    raise
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def get(self, kind: Kind, key: str) -> Change | None:
        """The current row for one target, or None."""
        rows = _changes(await self._fetch(_GET, Kind(kind).value, key))
        return rows[0] if rows else None

    async def since(self, seq: int, limit: int = 10_000) -> list[Change]:
        """Rows with seq greater than ``seq``, ascending, at most ``limit``."""
        return _changes(await self._fetch(_SINCE, seq, limit))

    async def head(self) -> int:
        """The highest seq handed out so far."""
        rows = await self._fetch("SELECT seq FROM revsync_meta WHERE id = 1")
        return int(rows[0][0]) if rows else 0

    async def position(self) -> StorePosition:
        """The store's identity, epoch and head, read in one statement."""
        rows = await self._fetch(_POSITION, HISTORY_SLOTS)
        if not rows:
            msg = f"PostgreSQL store {self.url} has no identity row; was its schema created?"
            raise StoreError(msg)
        store_id, epoch, head, stamp = rows[0]
        return StorePosition(str(store_id), int(epoch), int(head), stamp)

    async def history(self, seq: int) -> HistoryEntry | None:
        """The history ring's entry in the slot of ``seq`` (see ``Store.history``)."""
        sql = "SELECT first, seq, stamp FROM revsync_history WHERE slot = $1"
        rows = await self._fetch(sql, seq % HISTORY_SLOTS)
        return HistoryEntry(int(rows[0][0]), int(rows[0][1]), float(rows[0][2])) if rows else None

    async def new_epoch(self) -> StorePosition:
        """Start a new generation of the store's history (after a restore or failover)."""
        sql = "UPDATE revsync_store SET epoch = epoch + 1 WHERE id = 1"
        async with self._errors("write to"), self._acquire() as conn:
            await conn.execute(sql)
        return await self.position()

    async def prune(self, before: float) -> int:
        """Delete rows whose ``expires_at`` is earlier than ``before``."""
        sql = "DELETE FROM revsync_changes WHERE expires_at < $1"
        # One transaction, like SQLite's: a prune cancelled half-way leaves nothing half-done.
        async with self._errors("prune of"), self._acquire() as conn, conn.transaction():
            status: str = await conn.execute(sql, float(before))
            await conn.execute("DELETE FROM revsync_tokens WHERE expires_at < $1", float(before))
            await conn.execute("DELETE FROM revsync_families WHERE expires_at < $1", float(before))
        return int(status.rpartition(" ")[2])

    async def by_identity(self, identity: str) -> list[Change]:
        """Rows of one identity, ascending by seq."""
        return _changes(await self._fetch(_BY_IDENTITY, identity))

    async def check(self) -> dict[str, int]:
        """Counter present and not behind any row; seq unique (also enforced by an index)."""
        sql = (
            "SELECT (SELECT seq FROM revsync_meta WHERE id = 1), count(*),"
            " coalesce(max(seq), 0), count(*) - count(DISTINCT seq) FROM revsync_changes"
        )
        ((counter, rows, max_row_seq, duplicates),) = await self._fetch(sql)
        if duplicates:
            msg = f"PostgreSQL store {self.url}: {duplicates} rows share a seq with another"
            raise StoreError(msg)
        return check_figures(counter, rows, max_row_seq, self.url)


def _changes(records: Iterable[Any]) -> list[Change]:
    """Build Changes from asyncpg records; the one per-row step on the snapshot path."""
    # tuple.__new__ is what Change._make does, minus a Python-level call per row.
    new, kinds = tuple.__new__, KINDS
    return [new(Change, (r[0], kinds[r[1]], r[2], r[3], r[4], r[5], r[6], r[7])) for r in records]
