"""PostgresStore: revocations in PostgreSQL, for deployments that already run one.

Every write runs in one transaction that first does
``UPDATE revsync_meta SET seq = seq + n RETURNING seq``.  The row lock on the
counter serialises writers, so numbers are committed in the order they are handed
out, and a rolled-back write gives its numbers back: no holes, no late commits
behind a reader's back (a plain SEQUENCE would allow both).

``connect()`` only looks the tables up (``to_regclass``): with the schema in place a
node runs no DDL, so its role needs nothing but SELECT, INSERT, UPDATE and DELETE on
revsync's tables (docs/security.md).  ``create_schema()`` (``revsync migrate``) creates
it under a transaction-scoped advisory lock, so several processes at once do not race
on ``CREATE TABLE IF NOT EXISTS``; ``connect()`` calls it when tables are missing, and
a role that may not create them gets an error naming ``revsync migrate``.  The tables
go in the first schema of the connection's ``search_path`` (settable in the URL:
``postgresql://host/db?search_path=revsync``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from revsync._urls import mask_url
from revsync.changes import Change, ChangeRequest, Kind
from revsync.stores._common import HISTORY_SLOTS, changes_from_rows, translate
from revsync.stores._layout import TABLES, TOKEN_COLUMNS, TOKENS, insert
from revsync.stores._snapshot import SnapshotParts, seqs_of, spans
from revsync.stores._sql import (
    POSITION,
    SELECT_CHANGES,
    SNAPSHOT_ANCHORS,
    Connection,
    Dialect,
    SqlStore,
    Work,
    missing_tables,
    position_of,
    snapshot_span,
)
from revsync.stores._tokens import TokenRecord, family_expiry, registrations_for
from revsync.stores.base import Snapshot, StoreError

__all__ = ["PostgresStore", "from_url", "numbered"]

_T = TypeVar("_T")

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
_PRESENT = "SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NOT NULL"

_BUMP = "UPDATE revsync_meta SET seq = seq + ? WHERE id = 1 RETURNING seq"
_LOAD = (
    f"{SELECT_CHANGES} WHERE (kind, key) IN"  # noqa: S608 - no value goes in
    " (SELECT * FROM unnest(?::text[], ?::text[]))"
)
# Every row in one statement: one array per column (layout.CHANGE_COLUMNS).
_UPSERT = """
INSERT INTO revsync_changes (seq, kind, key, revoked, expires_at, identity, cutoff, created_at)
SELECT * FROM unnest(?::bigint[], ?::text[], ?::text[], ?::boolean[],
                     ?::float8[], ?::text[], ?::float8[], ?::float8[])
ON CONFLICT (kind, key) DO UPDATE SET
    seq = EXCLUDED.seq, revoked = EXCLUDED.revoked, expires_at = EXCLUDED.expires_at,
    identity = EXCLUDED.identity, cutoff = EXCLUDED.cutoff, created_at = EXCLUDED.created_at
"""
# Arrays, which asyncpg decodes in C into lists of str, float and int.
_SNAPSHOT_SPAN = snapshot_span("array_agg(key)", "array_agg(expires_at)", "array_agg(seq)")
_BY_SEQS = f"{SELECT_CHANGES} WHERE seq = ANY(?::bigint[])"
# The same, skipping every target that has a row already (insert first: _sql._apply).
_INSERT_NEW = _UPSERT.partition("ON CONFLICT")[0] + "ON CONFLICT (kind, key) DO NOTHING"
_CURRENT = "SELECT family, expires_at FROM revsync_tokens WHERE jti = ?"
_ROTATE = "UPDATE revsync_tokens SET rotated = true WHERE jti = ? AND NOT rotated"
# Creates or extends (a family row lives as long as its longest-lived member) and
# locks the row until the transaction ends; returns the latest committed mark.
_EXTEND_FAMILY = (
    "INSERT INTO revsync_families (family, revoked, expires_at) VALUES (?, false, ?)"
    " ON CONFLICT (family) DO UPDATE"
    " SET expires_at = greatest(revsync_families.expires_at, EXCLUDED.expires_at)"
    " RETURNING revoked"
)


async def _create_schema(conn: Any, schema: str) -> None:
    """Run ``schema`` (every CREATE ... IF NOT EXISTS) under the schema advisory lock."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        await conn.execute(schema)


class _Refused(Exception):
    """Raised inside a rotation's transaction to roll it back: its compare-and-set failed."""


def from_url(url: str, **options: Any) -> PostgresStore:
    """A store for ``postgresql://user:password@host:port/database?search_path=...``."""
    netloc = urlsplit(url).netloc
    if "," not in netloc.rpartition("@")[2]:  # asyncpg also takes host1:port1,host2:port2
        urlsplit(url).port  # noqa: B018 - raises ValueError for a malformed port
    return PostgresStore(url, **options)


@functools.lru_cache(maxsize=128)
def numbered(sql: str) -> str:
    """``sql`` with its ``?`` marks numbered $1, $2, ..., asyncpg's placeholders."""
    first, *rest = sql.split("?")
    return first + "".join(f"${n}{part}" for n, part in enumerate(rest, 1))


class _Connection:
    """An asyncpg connection as ``sql.Connection``."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self._conn.execute(numbered(sql), *args)
        count = status.rpartition(" ")[2]  # "UPDATE 1", "INSERT 0 1", "DELETE 3"
        return int(count) if count.isdigit() else 0

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        rows: list[Any] = await self._conn.fetch(numbered(sql), *args)
        return rows

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(numbered(sql), rows)


class PostgresStore(SqlStore):
    """A revocation store in PostgreSQL, over an asyncpg pool (see the module docstring)."""

    dialect = Dialect(
        "PostgreSQL",
        "postgresql",
        duplicate_seqs="count(*) - count(DISTINCT seq)",
        insert_record=insert(TOKENS, TOKEN_COLUMNS) + " ON CONFLICT (jti) DO NOTHING",
    )

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
        """Open the pool and check that every table is there (no DDL when they are);
        create the missing ones if the role may, else raise StoreError naming
        ``revsync migrate``."""
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
                async with pool.acquire(timeout=self._connect_timeout) as conn:
                    missing = missing_tables(r[0] for r in await conn.fetch(_PRESENT, TABLES))
                    if missing:
                        await self._create_missing(conn, missing)
            except BaseException:
                pool.terminate()
                raise
        self._pool = pool

    async def _create_missing(self, conn: Any, missing: list[str]) -> None:
        try:
            await _create_schema(conn, self._schema())
        except asyncpg.InsufficientPrivilegeError as exc:
            msg = (
                f"PostgreSQL store {self.url} lacks revsync's tables {', '.join(missing)}, "
                f"and this role may not create them ({exc}); create the schema once with "
                f"a role that may: `revsync migrate` (docs/security.md)"
            )
            raise StoreError(msg) from exc

    async def create_schema(self) -> None:
        """Create every missing table, index and identity row (see ``Store``); the
        role needs CREATE on the schema.  Uses the pool when connected, else one
        connection of its own."""
        with translate(_ERRORS, lambda: f"cannot create the schema of PostgreSQL store {self.url}"):
            if self._pool is not None:
                async with self._acquire() as conn:
                    await _create_schema(conn, self._schema())
                return
            conn = await asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, command_timeout=self._command_timeout
            )
            try:
                await _create_schema(conn, self._schema())
            finally:
                await conn.close()

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

    async def _read(self, sql: str, *args: Any) -> list[Any]:
        """Run a read, once more on a fresh connection if the first one was lost."""
        for attempt in range(2):
            try:
                async with self._errors("read from"), self._acquire() as conn:
                    rows: list[Any] = await conn.fetch(numbered(sql), *args)
                    return rows
            except StoreError as exc:
                if attempt or not isinstance(exc.__cause__, _LOST):
                    raise
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def snapshot(self, live_after: float) -> Snapshot:
        """Every live row up to the head (see ``SnapshotReader``), in one read-only
        REPEATABLE READ transaction: every statement sees the same committed state."""
        live_after = float(live_after)
        async with (
            self._errors("snapshot of"),
            self._acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            head = position_of(await conn.fetch(numbered(POSITION), HISTORY_SLOTS), self).head
            parts = SnapshotParts(self.url)
            for after, upto in spans(head):
                row = await conn.fetchrow(numbered(_SNAPSHOT_SPAN), live_after, after, upto)
                parts.add((row[0], row[1]), (row[2], row[3]))
                parts.others.extend(seqs_of(row[4]))
            others = []
            if parts.others:
                others = changes_from_rows(await conn.fetch(numbered(_BY_SEQS), parts.others))
            anchors = changes_from_rows(await conn.fetch(numbered(SNAPSHOT_ANCHORS), head))
        return parts.snapshot(head, others, anchors[::-1])

    async def _transaction(self, what: str, work: Work[_T], isolation: str | None = None) -> _T:
        async with (
            self._errors(what),
            self._acquire() as conn,
            conn.transaction(isolation=isolation),
        ):
            return await work(_Connection(conn))

    async def _bump(self, conn: Connection, count: int) -> int:
        # The counter row's lock serialises writers until this transaction ends.
        rows = await conn.fetch(_BUMP, count)
        if not rows:
            msg = f"PostgreSQL store {self.url} has no sequence counter row"
            raise StoreError(msg)
        return int(rows[0][0])

    async def _load(
        self, conn: Connection, targets: set[tuple[Kind, str]]
    ) -> dict[tuple[Kind, str], Change]:
        kinds, keys = zip(*((kind.value, key) for kind, key in targets), strict=True)
        return {(c.kind, c.key): c for c in changes_from_rows(await conn.fetch(_LOAD, kinds, keys))}

    async def _store(self, conn: Connection, rows: list[Change]) -> None:
        await conn.execute(_UPSERT, *_columns(rows))

    async def _insert_new(self, conn: Connection, rows: list[Change]) -> int:
        return await conn.execute(_INSERT_NEW, *_columns(rows))

    # -- the token registry (revsync.registry) ------------------------------------------

    async def register(
        self, records: Sequence[TokenRecord], *, rotate: str | None = None
    ) -> list[Change] | None:
        """Record issued tokens and their ``Kind.ISSUED`` changes in one transaction.

        With ``rotate``, first mark that refresh jti rotated, compare-and-set (the row
        lock serialises two nodes rotating the same token): if it is unknown, already
        rotated or its family revoked, write nothing and return None.  Records with a
        family create or extend its row (``revoke_family``).
        """
        requests = registrations_for(records)
        try:
            return await self._transaction(
                "write to", lambda conn: self._register(conn, records, requests, rotate)
            )
        except _Refused:
            return None

    async def _register(
        self,
        conn: Connection,
        records: Sequence[TokenRecord],
        requests: list[ChangeRequest],
        rotate: str | None,
    ) -> list[Change]:
        """``register`` inside its transaction; raises _Refused to roll it back."""
        families = family_expiry(records)
        family = None
        if rotate is not None:
            current = await conn.fetch(_CURRENT, rotate)
            if not current:
                raise _Refused
            family, current_expiry = current[0]
            if family is not None:
                expires = max(current_expiry, families.get(family, -math.inf))
                families = dict(sorted({**families, family: expires}.items()))
        # Family rows are locked before the counter row, in one order, so two writers
        # never wait on each other in a cycle.  The rotated token's family row stays
        # locked to the end: a concurrent revoke_family waits for this rotation and
        # then reads its successor, or marked the family first and this sees the mark.
        revoked = set()
        for name, expires_at in families.items():
            ((is_revoked,),) = await conn.fetch(_EXTEND_FAMILY, name, expires_at)
            if is_revoked:
                revoked.add(name)
        if rotate is not None and (family in revoked or await conn.execute(_ROTATE, rotate) != 1):
            raise _Refused
        return await self._add_records(conn, records, requests)


def _columns(rows: list[Change]) -> list[tuple[Any, ...]]:
    """``rows`` as one tuple per column, kinds as their strings (for unnest)."""
    columns = list(zip(*rows, strict=True))
    columns[1] = tuple(kind.value for kind in columns[1])
    return columns
