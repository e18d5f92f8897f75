"""SqliteStore: the embedded default, one file shared by every node process on a host.

WAL mode lets readers run while one writer writes; ``busy_timeout`` makes a writer
wait for another process's write instead of failing; every write runs under
``BEGIN IMMEDIATE`` so it holds the write lock from its first statement, and the
sequence counter (a row of ``revsync_meta``) is bumped inside that transaction.
Numbers are therefore committed in the order they are handed out, with no holes.

Each store holds two connections: one for writes (behind a lock, so two tasks of
one node never interleave their transactions) and one for reads, so a reader never
sees another task's uncommitted write and never waits for it.

A write transaction runs in a task of its own, shielded from the caller's
cancellation (Quart cancels a handler whose client went away): aiosqlite runs a
statement in its thread even when the awaiting task is cancelled, so a transaction
abandoned half-way would stay open on the connection and lock the file for good.
The caller still sees CancelledError; the write commits or rolls back as a whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import aiosqlite

from revsync.changes import Change, ChangeRequest, Kind
from revsync.stores.base import HistoryEntry, StoreError, StorePosition
from revsync.stores.common import (
    HISTORY_SLOTS,
    KINDS,
    apply_all,
    check_figures,
    check_request,
    translate,
)
from revsync.stores.tokens import (
    TokenRecord,
    family_expiry,
    records_from_rows,
    request_for,
    row_for,
)

__all__ = ["SqliteStore", "from_url"]

_T = TypeVar("_T")

_ERRORS = (sqlite3.Error, OSError)
_BOOL = (False, True)
_KEYS_PER_QUERY = 500

_CHANGES_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('jti', 'subject', 'token')),
    key TEXT NOT NULL,
    revoked INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    identity TEXT,
    cutoff REAL,
    created_at REAL NOT NULL,
    UNIQUE (kind, key)
);
"""
_CHANGES_INDEXES = (
    "CREATE INDEX IF NOT EXISTS revsync_changes_identity ON revsync_changes (identity, seq)",
    "CREATE INDEX IF NOT EXISTS revsync_changes_expires_at ON revsync_changes (expires_at)",
)
_COPY_CHANGES = (
    "INSERT INTO revsync_changes_migrating"
    " (seq, kind, key, revoked, expires_at, identity, cutoff, created_at)"
    " SELECT seq, kind, key, revoked, expires_at, identity, cutoff, created_at"
    " FROM revsync_changes"
)

_SCHEMA_TEMPLATE = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS revsync_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO revsync_meta (id, seq) VALUES (1, 0);
{changes_table}
{changes_indexes}
CREATE TABLE IF NOT EXISTS revsync_tokens (
    jti TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    type TEXT NOT NULL,
    family TEXT,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    metadata TEXT NOT NULL,
    rotated INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS revsync_tokens_identity ON revsync_tokens (identity, seq);
CREATE INDEX IF NOT EXISTS revsync_tokens_family ON revsync_tokens (family);
CREATE INDEX IF NOT EXISTS revsync_tokens_expires_at ON revsync_tokens (expires_at);
CREATE TABLE IF NOT EXISTS revsync_families (
    family TEXT PRIMARY KEY,
    revoked INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS revsync_families_expires_at ON revsync_families (expires_at);
COMMIT;
"""
_SCHEMA = _SCHEMA_TEMPLATE.format(
    changes_table=_CHANGES_TABLE.format(name="revsync_changes").strip(),
    changes_indexes="\n".join(f"{index};" for index in _CHANGES_INDEXES),
)


# The store's identity and generation (revsync.stores.base.StorePosition): created
# once, with a random id, by whichever process creates the schema first.
_IDENTITY_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS revsync_store (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    store_id TEXT NOT NULL,
    epoch INTEGER NOT NULL
);
INSERT OR IGNORE INTO revsync_store (id, store_id, epoch) VALUES (1, '{store_id}', 1);
CREATE TABLE IF NOT EXISTS revsync_history (
    slot INTEGER PRIMARY KEY,
    first INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    stamp REAL NOT NULL
);
COMMIT;
"""
_POSITION = (
    "SELECT s.store_id, s.epoch, m.seq, (SELECT h.stamp FROM revsync_history h"
    " WHERE h.slot = m.seq % ? AND h.seq = m.seq)"
    " FROM revsync_store s, revsync_meta m WHERE s.id = 1 AND m.id = 1"
)
_RECORD_HISTORY = (
    "INSERT OR REPLACE INTO revsync_history (slot, first, seq, stamp) VALUES (?, ?, ?, ?)"
)

_SELECT = (
    "SELECT seq, kind, key, revoked, expires_at, identity, cutoff, created_at FROM revsync_changes"
)
_GET = f"{_SELECT} WHERE kind = ? AND key = ?"
_SINCE = f"{_SELECT} WHERE seq > ? ORDER BY seq LIMIT ?"
_BY_IDENTITY = f"{_SELECT} WHERE identity = ? ORDER BY seq"
_REPLACE = (
    "INSERT OR REPLACE INTO revsync_changes"
    " (seq, kind, key, revoked, expires_at, identity, cutoff, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


_RECORD_SELECT = (
    "SELECT jti, identity, type, family, issued_at, expires_at, metadata, rotated, seq"
    " FROM revsync_tokens"
)
_RECORD = _RECORD_SELECT + " WHERE jti = ?"
_RECORDS_BY = {
    "identity": _RECORD_SELECT + " WHERE identity = ? ORDER BY seq",
    "family": _RECORD_SELECT + " WHERE family = ? ORDER BY seq",
}
_INSERT_RECORD = (
    "INSERT OR REPLACE INTO revsync_tokens"
    " (jti, identity, type, family, issued_at, expires_at, metadata, rotated, seq)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The compare-and-set of a rotation: known, not yet rotated, and its family not revoked.
_ROTATE = (
    "UPDATE revsync_tokens SET rotated = 1 WHERE jti = ? AND rotated = 0 AND NOT EXISTS"
    " (SELECT 1 FROM revsync_families f WHERE f.family = revsync_tokens.family AND f.revoked)"
)
# A family row lives as long as its longest-lived member.
_EXTEND_FAMILY = (
    "INSERT INTO revsync_families (family, revoked, expires_at) VALUES (?, 0, ?)"
    " ON CONFLICT (family) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)"
)
_REVOKE_FAMILY = (
    "INSERT INTO revsync_families (family, revoked, expires_at)"
    " VALUES (?, 1, coalesce((SELECT max(expires_at) FROM revsync_tokens WHERE family = ?), 0))"
    " ON CONFLICT (family) DO UPDATE SET revoked = 1"
)


def from_url(url: str, **options: Any) -> SqliteStore:
    """A store for ``sqlite:///relative/path`` or ``sqlite:////absolute/path``."""
    parts = urlsplit(url)
    if parts.netloc or parts.query or parts.fragment:
        msg = "a sqlite URL has no host, query or fragment: sqlite:///path/to/file.db"
        raise ValueError(msg)
    path = unquote(parts.path)[1:]
    if not path:
        msg = "the sqlite URL names no file: use sqlite:///path/to/file.db"
        raise ValueError(msg)
    if path == ":memory:" or path.startswith("file:") or "mode=memory" in path:
        msg = (
            "an in-memory SQLite database lives in one process, but every node must "
            "read the same revocations: name a file, e.g. sqlite:///revsync.db"
        )
        raise ValueError(msg)
    return SqliteStore(path, url=url, **options)


class SqliteStore:
    """A revocation store in one SQLite file (see the module docstring)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0, url: str = "") -> None:
        self.path = str(path)
        self.url = url or f"sqlite:///{self.path}"
        self._busy_timeout = busy_timeout
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._writes: set[asyncio.Task[Any]] = set()  # in flight, held until done

    async def connect(self) -> None:
        """Open both connections, switch the file to WAL and create the schema."""
        if self._writer is not None:
            return
        try:
            with translate(_ERRORS, lambda: f"cannot open SQLite store {self.url}"):
                # Opening with plain sqlite3 first turns a bad path into a clean error:
                # aiosqlite leaves its worker thread to finish after a failed open.
                await asyncio.to_thread(_probe, self.path)
                self._writer = await self._open()
                await _switch_to_wal(self._writer)
                await self._writer.execute("PRAGMA synchronous = FULL")
                # Not shielded like writes: a failed or cancelled connect closes the
                # writer below, and closing a connection rolls its transaction back.
                await self._create_schema(self._writer)
                self._reader = await self._open()
                await self._reader.execute("PRAGMA query_only = 1")
        except BaseException:
            await self.close()
            raise

    async def _open(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        return conn

    async def close(self) -> None:
        """Close both connections, after the write transactions already queued."""
        async with self._write_lock:
            writer, reader, self._writer, self._reader = self._writer, self._reader, None, None
        for conn in (writer, reader):
            if conn is not None:
                with contextlib.suppress(*_ERRORS):  # a broken connection has nothing to release
                    await conn.close()

    @staticmethod
    async def _create_schema(conn: aiosqlite.Connection) -> None:
        # The script carries its own BEGIN IMMEDIATE ... COMMIT: executescript() would
        # commit a transaction opened outside it.  Several processes may run it at once.
        try:
            await conn.executescript(_SCHEMA)
            await conn.executescript(_IDENTITY_SCHEMA.format(store_id=uuid.uuid4().hex))
            if await _needs_kind_migration(conn):
                await conn.execute("BEGIN IMMEDIATE")
                if await _needs_kind_migration(conn):  # another process may have done it
                    await _migrate_kind_check(conn)
                await conn.execute("COMMIT")
        except BaseException:
            await _rollback(conn)
            raise

    async def _transaction(
        self, what: str, work: Callable[[aiosqlite.Connection], Awaitable[_T]]
    ) -> _T:
        """Run ``work`` in one write transaction that ends (COMMIT or ROLLBACK) even if
        the caller is cancelled; driver errors become StoreError ``what ... failed``."""
        task = asyncio.create_task(self._locked_transaction(what, work))
        self._writes.add(task)
        task.add_done_callback(self._write_done)
        return await asyncio.shield(task)

    async def _locked_transaction(
        self, what: str, work: Callable[[aiosqlite.Connection], Awaitable[_T]]
    ) -> _T:
        async with self._write_lock:
            conn = self._conn(self._writer)
            with translate(_ERRORS, lambda: f"{what} SQLite store {self.url} failed"):
                try:
                    await conn.execute("BEGIN IMMEDIATE")
                    result = await work(conn)
                    await conn.execute("COMMIT")
                except BaseException:
                    # Also after a failed BEGIN: ROLLBACK then fails harmlessly.
                    await _rollback(conn)
                    raise
        return result

    def _write_done(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller cancelled meanwhile no longer awaits it

    def _conn(self, conn: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if conn is None:
            msg = f"SQLite store {self.url} is not connected; call connect() first"
            raise StoreError(msg)
        return conn

    async def write(self, request: ChangeRequest) -> Change:
        """Write one change (see ``Store.write``)."""
        return (await self.write_many([request]))[0]

    async def write_many(self, requests: Sequence[ChangeRequest]) -> list[Change]:
        """Write several changes in one transaction, numbered consecutively."""
        checked = [check_request(request) for request in requests]
        if not checked:
            return []
        return await self._transaction("write to", functools.partial(self._apply, checked))

    async def _apply(
        self, requests: list[ChangeRequest], conn: aiosqlite.Connection
    ) -> list[Change]:
        count = len(requests)
        await conn.execute("UPDATE revsync_meta SET seq = seq + ? WHERE id = 1", (count,))
        ((head,),) = await conn.execute_fetchall("SELECT seq FROM revsync_meta WHERE id = 1")
        old = await self._load(conn, {(request.kind, request.key) for request in requests})
        now = time.time()
        changes, final = apply_all(old, requests, head - count + 1, now)
        await conn.executemany(
            _REPLACE,
            [(c.seq, c.kind.value, *c[2:]) for c in final],
        )
        await conn.execute(_RECORD_HISTORY, (head % HISTORY_SLOTS, head - count + 1, head, now))
        return changes

    async def _load(
        self, conn: aiosqlite.Connection, targets: Iterable[tuple[Kind, str]]
    ) -> dict[tuple[Kind, str], Change]:
        by_kind: dict[Kind, list[str]] = {}
        for kind, key in targets:
            by_kind.setdefault(kind, []).append(key)
        found: dict[tuple[Kind, str], Change] = {}
        for kind, keys in by_kind.items():
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                chunk = keys[start : start + _KEYS_PER_QUERY]
                marks = ", ".join("?" * len(chunk))
                sql = f"{_SELECT} WHERE kind = ? AND key IN ({marks})"
                for change in _changes(await conn.execute_fetchall(sql, (kind.value, *chunk))):
                    found[(change.kind, change.key)] = change
        return found

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> Iterable[Any]:
        conn = self._conn(self._reader)
        with translate(_ERRORS, lambda: f"read from SQLite store {self.url} failed"):
            return await conn.execute_fetchall(sql, params)

    async def get(self, kind: Kind, key: str) -> Change | None:
        """The current row for one target, or None."""
        rows = _changes(await self._read(_GET, (Kind(kind).value, key)))
        return rows[0] if rows else None

    async def since(self, seq: int, limit: int = 10_000) -> list[Change]:
        """Rows with seq greater than ``seq``, ascending, at most ``limit``."""
        return _changes(await self._read(_SINCE, (seq, limit)))

    async def head(self) -> int:
        """The highest seq handed out so far."""
        rows = list(await self._read("SELECT seq FROM revsync_meta WHERE id = 1"))
        return int(rows[0][0]) if rows else 0

    async def position(self) -> StorePosition:
        """The store's identity, epoch and head, read in one statement."""
        rows = list(await self._read(_POSITION, (HISTORY_SLOTS,)))
        if not rows:
            msg = f"SQLite store {self.url} has no identity row; was its schema created by revsync?"
            raise StoreError(msg)
        store_id, epoch, head, stamp = rows[0]
        return StorePosition(str(store_id), int(epoch), int(head), stamp)

    async def history(self, seq: int) -> HistoryEntry | None:
        """The history ring's entry in the slot of ``seq`` (see ``Store.history``)."""
        sql = "SELECT first, seq, stamp FROM revsync_history WHERE slot = ?"
        rows = list(await self._read(sql, (seq % HISTORY_SLOTS,)))
        return HistoryEntry(int(rows[0][0]), int(rows[0][1]), float(rows[0][2])) if rows else None

    async def new_epoch(self) -> StorePosition:
        """Start a new generation of the store's history (after a restore)."""

        async def work(conn: aiosqlite.Connection) -> None:
            await conn.execute("UPDATE revsync_store SET epoch = epoch + 1 WHERE id = 1")

        await self._transaction("write to", work)
        return await self.position()

    async def prune(self, before: float) -> int:
        """Delete rows whose ``expires_at`` is earlier than ``before``."""
        before = float(before)

        async def work(conn: aiosqlite.Connection) -> int:
            sql = "DELETE FROM revsync_changes WHERE expires_at < ?"
            cursor = await conn.execute(sql, (before,))
            await conn.execute("DELETE FROM revsync_tokens WHERE expires_at < ?", (before,))
            await conn.execute("DELETE FROM revsync_families WHERE expires_at < ?", (before,))
            return int(cursor.rowcount)

        return await self._transaction("prune of", work)

    # -- the token registry (revsync.registry) ------------------------------------------

    async def register(
        self, records: Sequence[TokenRecord], *, rotate: str | None = None
    ) -> list[Change] | None:
        """Record issued tokens and their ``Kind.TOKEN`` changes in one transaction.

        With ``rotate``, first mark that refresh jti rotated, compare-and-set: if it is
        unknown, already rotated or its family revoked, write nothing and return None.
        Records with a family create or extend its row (``revoke_family``).
        """
        requests = [check_request(request_for(record)) for record in records]

        async def work(conn: aiosqlite.Connection) -> list[Change] | None:
            if rotate is not None:
                cursor = await conn.execute(_ROTATE, (rotate,))
                if cursor.rowcount != 1:
                    return None
            if not requests:
                return []
            changes = await self._apply(requests, conn)
            rows = [row_for(r, c.seq) for r, c in zip(records, changes, strict=True)]
            await conn.executemany(_INSERT_RECORD, rows)
            await conn.executemany(_EXTEND_FAMILY, family_expiry(records).items())
            return changes

        return await self._transaction("write to", work)

    async def revoke_family(self, family: str) -> list[TokenRecord]:
        """Mark a refresh family revoked, so no rotation of its tokens succeeds any more,
        and return its records, read in the same transaction after the mark."""

        async def work(conn: aiosqlite.Connection) -> list[TokenRecord]:
            # The write lock (BEGIN IMMEDIATE) orders this against every rotation.
            await conn.execute(_REVOKE_FAMILY, (family, family))
            rows = await conn.execute_fetchall(_RECORDS_BY["family"], (family,))
            return records_from_rows(rows)

        return await self._transaction("write to", work)

    async def token(self, jti: str) -> TokenRecord | None:
        """The registry record of one jti, or None."""
        sql = _RECORD
        found = records_from_rows(await self._read(sql, (jti,)))
        return found[0] if found else None

    async def tokens(
        self, *, identity: str | None = None, family: str | None = None
    ) -> list[TokenRecord]:
        """Registry records of one identity or one refresh family, ascending by seq."""
        column, value = ("identity", identity) if family is None else ("family", family)
        sql = _RECORDS_BY[column]
        return records_from_rows(await self._read(sql, (value,)))

    async def by_identity(self, identity: str) -> list[Change]:
        """Rows of one identity, ascending by seq."""
        return _changes(await self._read(_BY_IDENTITY, (identity,)))

    async def check(self) -> dict[str, int]:
        """Counter present and not behind any row (seq is the primary key, so unique)."""
        sql = (
            "SELECT (SELECT seq FROM revsync_meta WHERE id = 1), count(*), coalesce(max(seq), 0)"
            " FROM revsync_changes"
        )
        ((counter, rows, max_row_seq),) = await self._read(sql)
        return check_figures(counter, rows, max_row_seq, self.url)


async def _needs_kind_migration(conn: aiosqlite.Connection) -> bool:
    """Whether revsync_changes predates the token registry: its CHECK refuses 'token'."""
    sql = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'revsync_changes'"
    rows = list(await conn.execute_fetchall(sql))
    return bool(rows) and "'token'" not in rows[0][0]


async def _migrate_kind_check(conn: aiosqlite.Connection) -> None:
    """Rebuild revsync_changes with the current CHECK, inside the caller's transaction
    (SQLite cannot alter a constraint in place): copy, drop, rename, re-index."""
    await conn.execute("DROP TABLE IF EXISTS revsync_changes_migrating")
    await conn.execute(_CHANGES_TABLE.format(name="revsync_changes_migrating"))
    await conn.execute(_COPY_CHANGES)
    await conn.execute("DROP TABLE revsync_changes")
    await conn.execute("ALTER TABLE revsync_changes_migrating RENAME TO revsync_changes")
    for index in _CHANGES_INDEXES:
        await conn.execute(index)


WAL_ATTEMPTS = 50


async def _switch_to_wal(conn: aiosqlite.Connection) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another process switches it too.

    Several nodes opening a new file at once race to switch it; the switch needs the
    file to themselves and SQLite answers "database is locked" at once, without waiting
    for busy_timeout.  Once one of them has switched, the others' switch is a no-op.
    """
    for attempt in range(WAL_ATTEMPTS):
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.01 * (1 + attempt % 10))
        else:
            return


def _probe(path: str) -> None:
    sqlite3.connect(path).close()


async def _rollback(conn: aiosqlite.Connection) -> None:
    with contextlib.suppress(*_ERRORS):  # SQLite already rolled back, or the file is gone
        await conn.execute("ROLLBACK")


def _changes(rows: Iterable[Any]) -> list[Change]:
    """Build Changes from raw row tuples; the one per-row step on the snapshot path."""
    # tuple.__new__ is what Change._make does, minus a Python-level call per row.
    new, kinds = tuple.__new__, KINDS
    bools = _BOOL
    return [
        new(Change, (r[0], kinds[r[1]], r[2], bools[r[3]], r[4], r[5], r[6], r[7])) for r in rows
    ]
