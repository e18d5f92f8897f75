"""The SQL store core: what SqliteStore and PostgresStore do alike, written once.

:class:`SqlStore` holds the statements and the logic of every operation; a subclass
knows only its driver: how it reads, how it runs a write transaction (SQLite's
shielded ``BEGIN IMMEDIATE``, PostgreSQL's pooled ``conn.transaction()``), how it
bumps the counter and how it loads and stores many rows at once.  Everything else
that differs is in its :class:`Dialect`.

Statements are written with ``?`` marks; PostgresStore numbers them ($1, $2, ...).
Each write bumps the counter row inside its transaction, so seqs are committed in
the order they are handed out (docs/design.md, "Sequence numbers"), and records its
range in the history ring in the same transaction ("When the store goes back in time").
"""

from __future__ import annotations

import time
import uuid
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from revsync.changes import Change, ChangeRequest, Kind
from revsync.stores._common import (
    HISTORY_SLOTS,
    WriteMany,
    changes_from_rows,
    check_figures,
    merge_conflicts,
    plan_new,
)
from revsync.stores._layout import (
    CHANGE_COLUMNS,
    CHANGES,
    HEAD,
    TABLES,
    TOKEN_COLUMNS,
    TOKENS,
    select,
    sql_schema,
)
from revsync.stores._tokens import TokenRecord, records_from_rows, row_for
from revsync.stores.base import (
    ANCHORS,
    PAGE_SIZE,
    Committed,
    HistoryEntry,
    StoreError,
    StorePosition,
)

__all__ = [
    "POSITION",
    "SNAPSHOT_ANCHORS",
    "Connection",
    "Dialect",
    "SqlStore",
    "Work",
    "missing_tables",
    "position_of",
    "snapshot_span",
]

_T = TypeVar("_T")

SELECT_CHANGES = select(CHANGES, CHANGE_COLUMNS)
_GET = f"{SELECT_CHANGES} WHERE kind = ? AND key = ?"
_SINCE = f"{SELECT_CHANGES} WHERE seq > ? ORDER BY seq LIMIT ?"
_BY_IDENTITY = f"{SELECT_CHANGES} WHERE identity = ? ORDER BY seq"
_SEQS_BETWEEN = "SELECT seq FROM revsync_changes WHERE seq BETWEEN ? AND ?"
_CHECK = (
    "SELECT (SELECT seq FROM revsync_meta WHERE id = 1), count(*), coalesce(max(seq), 0),"
    " {duplicates} FROM revsync_changes"
)

POSITION = (
    "SELECT s.store_id, s.epoch, m.seq, (SELECT h.stamp FROM revsync_history h"
    " WHERE h.slot = m.seq % ? AND h.seq = m.seq)"
    " FROM revsync_store s, revsync_meta m WHERE s.id = 1 AND m.id = 1"
)
_HISTORY = "SELECT first, seq, stamp FROM revsync_history WHERE slot = ?"
_RECORD_HISTORY = (
    "INSERT INTO revsync_history (slot, first, seq, stamp) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (slot) DO UPDATE"
    " SET first = EXCLUDED.first, seq = EXCLUDED.seq, stamp = EXCLUDED.stamp"
)
_NEW_EPOCH = "UPDATE revsync_store SET epoch = epoch + 1 WHERE id = 1"
_PRUNE = (
    "DELETE FROM revsync_changes WHERE expires_at < ?",
    "DELETE FROM revsync_tokens WHERE expires_at < ?",
    "DELETE FROM revsync_families WHERE expires_at < ?",
)
"""Rows, then registry records and families (the rows' count is what prune returns)."""

# The start-up snapshot (SnapshotReader.snapshot, revsync.stores._snapshot): one scan
# per span of seqs aggregates the keys and expiries of revoked jtis and registrations,
# and the seqs of the other live rows, read afterwards by seq.
_JTIS = "kind = 'jti' AND revoked"
_REGISTRATIONS = "kind = 'issued' AND NOT revoked"
SNAPSHOT_ANCHORS = f"{SELECT_CHANGES} WHERE seq <= ? ORDER BY seq DESC LIMIT {ANCHORS}"


def snapshot_span(keys: str, expiries: str, seqs: str) -> str:
    """The statement that reads one span (parameters: live_after, after, upto), with the
    dialect's aggregates of keys, expiries and seqs."""
    columns = (
        f"{keys} FILTER (WHERE {_JTIS}), {expiries} FILTER (WHERE {_JTIS}),"
        f" {keys} FILTER (WHERE {_REGISTRATIONS}), {expiries} FILTER (WHERE {_REGISTRATIONS}),"
        f" {seqs} FILTER (WHERE NOT ({_JTIS}) AND NOT ({_REGISTRATIONS}))"
    )
    return f"SELECT {columns} FROM {CHANGES} WHERE expires_at >= ? AND seq > ? AND seq <= ?"  # noqa: S608 - no value goes in


_SELECT_RECORDS = select(TOKENS, TOKEN_COLUMNS)
_RECORD = f"{_SELECT_RECORDS} WHERE jti = ?"
_RECORDS_BY = {
    "identity": f"{_SELECT_RECORDS} WHERE identity = ? ORDER BY seq",
    "family": f"{_SELECT_RECORDS} WHERE family = ? ORDER BY seq",
}
_REVOKE_FAMILY = (
    "INSERT INTO revsync_families (family, revoked, expires_at) VALUES"
    " (?, true, coalesce((SELECT max(expires_at) FROM revsync_tokens WHERE family = ?), 0))"
    " ON CONFLICT (family) DO UPDATE SET revoked = true"
)


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the SQL stores beyond their driver."""

    name: str
    """The database, as messages name it ("SQLite")."""
    schema: str
    """Its name in ``layout.sql_schema``."""
    duplicate_seqs: str
    """An expression counting rows that share a seq (``check``): "0" where seq is the
    primary key."""
    insert_record: str
    """The statement that adds a row to ``revsync_tokens`` (``register``)."""


class Connection(Protocol):
    """A driver's connection inside a write transaction, as the core uses it."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; return how many rows it changed."""

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        """Run one query; return its rows (indexable by column)."""

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement per row."""


Work = Callable[[Connection], Awaitable[_T]]
"""What runs inside a write transaction."""


def position_of(rows: Sequence[Sequence[Any]], store: SqlStore) -> StorePosition:
    """The position from the rows of ``POSITION`` (run with ``HISTORY_SLOTS``)."""
    if not rows:
        msg = (
            f"{store.dialect.name} store {store.url} has no identity row; "
            "was its schema created by revsync?"
        )
        raise StoreError(msg)
    store_id, epoch, head, stamp = rows[0]
    return StorePosition(str(store_id), int(epoch), int(head), stamp)


def missing_tables(found: Iterable[object]) -> list[str]:
    """The tables of the schema (``layout.TABLES``) not among ``found``."""
    present = {str(name) for name in found}
    return [table for table in TABLES if table not in present]


class SqlStore(WriteMany):
    """Every ``Store`` operation over the driver hooks a subclass provides."""

    dialect: ClassVar[Dialect]
    url: str

    # -- what each driver provides ----------------------------------------------------

    @abstractmethod
    async def _read(self, sql: str, *args: Any) -> list[Any]:
        """Run one query outside any write transaction; return its rows."""

    @abstractmethod
    async def _transaction(self, what: str, work: Work[_T], isolation: str | None = None) -> _T:
        """Run ``work`` in one write transaction; driver errors become StoreError
        "``what`` ... store ... failed".  ``isolation`` is PostgreSQL's level (SQLite's
        ``BEGIN IMMEDIATE`` serialises every write anyway)."""

    @abstractmethod
    async def _bump(self, conn: Connection, count: int) -> int:
        """Hand out ``count`` seqs from the counter row; return the last one."""

    @abstractmethod
    async def _load(
        self, conn: Connection, targets: set[tuple[Kind, str]]
    ) -> dict[tuple[Kind, str], Change]:
        """The current rows of ``targets`` (those the store has)."""

    @abstractmethod
    async def _store(self, conn: Connection, rows: list[Change]) -> None:
        """Insert or replace ``rows`` (one per target)."""

    @abstractmethod
    async def _insert_new(self, conn: Connection, rows: list[Change]) -> int:
        """Insert ``rows`` (one per target), skipping every target that already has a
        row (and no other error); return how many were inserted."""

    # -- writes -----------------------------------------------------------------------

    def _schema(self) -> str:
        """Every CREATE ... IF NOT EXISTS of this dialect, with a fresh store id."""
        return sql_schema(self.dialect.schema, uuid.uuid4().hex)

    async def _write_checked(
        self, requests: list[ChangeRequest], on_commit: Committed | None = None
    ) -> list[Change]:
        changes = await self._transaction("write to", lambda conn: self._apply(conn, requests))
        if on_commit is not None:
            await on_commit(changes)
        return changes

    async def _apply(self, conn: Connection, requests: list[ChangeRequest]) -> list[Change]:
        """Number and merge ``requests`` inside the caller's transaction.

        Insert first, merge only the conflicts: most targets of a batch (a mass
        revocation) have no row yet, so every final row is inserted as if none had, the
        store skipping the targets it has; only those are then read, merged over their
        rows (``common.merge``) and written.  The rows and changes are those of merging
        every request over what the store held (``common.apply_all``).
        """
        count = len(requests)
        head = await self._bump(conn, count)
        first = head - count + 1
        now = time.time()
        changes, final = plan_new(requests, first, now)
        if await self._insert_new(conn, final) < len(final):
            # A skipped target's row does not carry the seq planned for it.
            present = {row[0] for row in await conn.fetch(_SEQS_BETWEEN, first, head)}
            skipped = {(c.kind, c.key) for c in final if c.seq not in present}
            found = await self._load(conn, skipped)
            old = {target: found.get(target) for target in skipped}
            await self._store(conn, merge_conflicts(changes, requests, old, first, now))
        await conn.execute(_RECORD_HISTORY, head % HISTORY_SLOTS, first, head, now)
        return changes

    async def _add_records(
        self, conn: Connection, records: Sequence[TokenRecord], requests: list[ChangeRequest]
    ) -> list[Change]:
        """Write the records' changes (``requests``) and the records, inside the caller's
        transaction (``register``)."""
        if not requests:
            return []
        changes = await self._apply(conn, requests)
        rows = [row_for(r, c.seq) for r, c in zip(records, changes, strict=True)]
        await conn.executemany(self.dialect.insert_record, rows)
        return changes

    async def new_epoch(self) -> StorePosition:
        """Start a new generation of the store's history (after a restore or failover)."""
        await self._transaction("write to", lambda conn: conn.execute(_NEW_EPOCH))
        return await self.position()

    async def prune(self, before: float) -> int:
        """Delete rows whose ``expires_at`` is earlier than ``before``."""
        before = float(before)

        # One transaction: a prune cancelled half-way leaves nothing half-done.
        async def work(conn: Connection) -> int:
            counts = [await conn.execute(sql, before) for sql in _PRUNE]
            return counts[0]

        return await self._transaction("prune of", work)

    async def revoke_family(self, family: str) -> list[TokenRecord]:
        """Mark a refresh family revoked, so no rotation of its tokens succeeds any more,
        and return its records, read in the same transaction after the mark."""

        async def work(conn: Connection) -> list[TokenRecord]:
            # SQLite's write lock orders this against every rotation.  On PostgreSQL the
            # mark waits for a rotation holding the family row; the read, a statement
            # of its own, then sees it under read committed, whatever the server's default.
            await conn.execute(_REVOKE_FAMILY, family, family)
            return records_from_rows(await conn.fetch(_RECORDS_BY["family"], family))

        return await self._transaction("write to", work, isolation="read_committed")

    # -- reads ------------------------------------------------------------------------

    async def get(self, kind: Kind, key: str) -> Change | None:
        """The current row for one target, or None."""
        rows = changes_from_rows(await self._read(_GET, Kind(kind).value, key))
        return rows[0] if rows else None

    async def since(self, seq: int, limit: int = PAGE_SIZE) -> list[Change]:
        """Rows with seq greater than ``seq``, ascending, at most ``limit``."""
        return changes_from_rows(await self._read(_SINCE, seq, limit))

    async def by_identity(self, identity: str) -> list[Change]:
        """Rows of one identity, ascending by seq."""
        return changes_from_rows(await self._read(_BY_IDENTITY, identity))

    async def head(self) -> int:
        """The highest seq handed out so far."""
        rows = await self._read(HEAD)
        return int(rows[0][0]) if rows else 0

    async def position(self) -> StorePosition:
        """The store's identity, epoch and head, read in one statement."""
        return position_of(await self._read(POSITION, HISTORY_SLOTS), self)

    async def history(self, seq: int) -> HistoryEntry | None:
        """The history ring's entry in the slot of ``seq`` (see ``Store.history``)."""
        rows = await self._read(_HISTORY, seq % HISTORY_SLOTS)
        return HistoryEntry(int(rows[0][0]), int(rows[0][1]), float(rows[0][2])) if rows else None

    async def check(self) -> dict[str, int]:
        """Counter present and not behind any row; no two rows share a seq."""
        sql = _CHECK.format(duplicates=self.dialect.duplicate_seqs)
        ((counter, rows, max_row_seq, duplicates),) = await self._read(sql)
        if duplicates:
            msg = f"{self.dialect.name} store {self.url}: {duplicates} rows share a seq"
            raise StoreError(msg)
        return check_figures(counter, rows, max_row_seq, self.url)

    async def token(self, jti: str) -> TokenRecord | None:
        """The registry record of one jti, or None."""
        found = records_from_rows(await self._read(_RECORD, jti))
        return found[0] if found else None

    async def tokens(
        self, *, identity: str | None = None, family: str | None = None
    ) -> list[TokenRecord]:
        """Registry records of one identity or one refresh family, ascending by seq."""
        column, value = ("identity", identity) if family is None else ("family", family)
        return records_from_rows(await self._read(_RECORDS_BY[column], value))
