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
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

import aiosqlite

from revsync.changes import Change, Kind
from revsync.stores._common import HISTORY_SLOTS, changes_from_rows, translate
from revsync.stores._layout import CHANGE_COLUMNS, CHANGES, HEAD, TOKEN_COLUMNS, TOKENS, insert
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

__all__ = ["SqliteStore", "from_url"]

_T = TypeVar("_T")

_ERRORS = (sqlite3.Error, OSError)
_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
_KEYS_PER_QUERY = 500

_REPLACE = insert(CHANGES, CHANGE_COLUMNS, "INSERT OR REPLACE")
# Keys as one JSON array, expiries as text with 17 significant digits ("%!.17g": every
# double reads back as itself), seqs as text: parsed in C by revsync.stores._snapshot.
_SNAPSHOT_SPAN = snapshot_span(
    "json_group_array(key)", "group_concat(printf('%!.17g', expires_at))", "group_concat(seq)"
)
_INSERT_NEW = insert(CHANGES, CHANGE_COLUMNS) + " ON CONFLICT (kind, key) DO NOTHING"
_TOTAL_CHANGES = "SELECT total_changes()"
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


class _Connection:
    """An aiosqlite connection as ``sql.Connection``."""

    __slots__ = ("_conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        cursor = await self._conn.execute(sql, args)
        return int(cursor.rowcount)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return cast("list[Any]", await self._conn.execute_fetchall(sql, args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)


class SqliteStore(SqlStore):
    """A revocation store in one SQLite file (see the module docstring)."""

    dialect = Dialect(
        "SQLite",
        "sqlite",
        duplicate_seqs="0",  # seq is the primary key
        insert_record=insert(TOKENS, TOKEN_COLUMNS, "INSERT OR REPLACE"),
    )

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0, url: str = "") -> None:
        self.path = str(path)
        self.url = url or f"sqlite:///{self.path}"
        self._busy_timeout = busy_timeout
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._writes: set[asyncio.Task[Any]] = set()  # in flight, held until done

    async def connect(self) -> None:
        """Open both connections, switch the file to WAL and create the schema if a
        table is missing (a file that has it sees no DDL)."""
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
                if missing_tables(r[0] for r in await self._writer.execute_fetchall(_TABLES)):
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

    async def create_schema(self) -> None:
        """Create whatever of the schema is missing (see ``Store``), on the writer when
        connected (after the writes queued), else on a connection of its own."""
        with translate(_ERRORS, lambda: f"cannot create the schema of SQLite store {self.url}"):
            if self._writer is not None:
                async with self._write_lock:
                    await self._create_schema(self._conn(self._writer))
                return
            await asyncio.to_thread(_probe, self.path)
            conn = await self._open()
            try:
                await self._create_schema(conn)
            finally:
                await conn.close()

    async def _create_schema(self, conn: aiosqlite.Connection) -> None:
        # The script carries its own BEGIN IMMEDIATE ... COMMIT: executescript() would
        # commit a transaction opened outside it.  Several processes may run it at once.
        try:
            await conn.executescript(f"BEGIN IMMEDIATE;\n{self._schema()}\nCOMMIT;")
        except BaseException:
            await _rollback(conn)
            raise

    async def _transaction(self, what: str, work: Work[_T], isolation: str | None = None) -> _T:
        """Run ``work`` in one write transaction that ends (COMMIT or ROLLBACK) even if
        the caller is cancelled; driver errors become StoreError ``what ... failed``."""
        task = asyncio.create_task(self._locked_transaction(what, work))
        self._writes.add(task)
        task.add_done_callback(self._write_done)
        return await asyncio.shield(task)

    async def _locked_transaction(self, what: str, work: Work[_T]) -> _T:
        async with self._write_lock:
            conn = self._conn(self._writer)
            with translate(_ERRORS, lambda: f"{what} SQLite store {self.url} failed"):
                try:
                    await conn.execute("BEGIN IMMEDIATE")
                    result = await work(_Connection(conn))
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

    async def _read(self, sql: str, *args: Any) -> list[Any]:
        conn = self._conn(self._reader)
        with translate(_ERRORS, lambda: f"read from SQLite store {self.url} failed"):
            return cast("list[Any]", await conn.execute_fetchall(sql, args))

    async def snapshot(self, live_after: float) -> Snapshot:
        """Every live row up to the head (see ``SnapshotReader``), in one read transaction
        on a connection of its own, in a worker thread: SQLite scans without the GIL,
        and the serving connections stay free meanwhile."""
        self._conn(self._reader)
        with translate(_ERRORS, lambda: f"snapshot of SQLite store {self.url} failed"):
            return await asyncio.to_thread(self._read_snapshot, float(live_after))

    def _read_snapshot(self, live_after: float) -> Snapshot:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA query_only = 1")
            conn.execute("BEGIN")  # one WAL snapshot for every statement below
            head = position_of(conn.execute(POSITION, (HISTORY_SLOTS,)).fetchall(), self).head
            parts = SnapshotParts(self.url)
            for after, upto in spans(head):
                row = conn.execute(_SNAPSHOT_SPAN, (live_after, after, upto)).fetchone()
                parts.add((row[0], row[1]), (row[2], row[3]))
                parts.others.extend(seqs_of(row[4]))
            others = []
            for start in range(0, len(parts.others), _KEYS_PER_QUERY):
                chunk = parts.others[start : start + _KEYS_PER_QUERY]
                sql = f"{SELECT_CHANGES} WHERE seq IN ({', '.join('?' * len(chunk))})"
                others += changes_from_rows(conn.execute(sql, chunk).fetchall())
            anchors = changes_from_rows(conn.execute(SNAPSHOT_ANCHORS, (head,)).fetchall())
            conn.execute("COMMIT")
        finally:
            conn.close()
        return parts.snapshot(head, others, anchors[::-1])

    async def _bump(self, conn: Connection, count: int) -> int:
        await conn.execute("UPDATE revsync_meta SET seq = seq + ? WHERE id = 1", count)
        ((head,),) = await conn.fetch(HEAD)
        return int(head)

    async def _load(
        self, conn: Connection, targets: Iterable[tuple[Kind, str]]
    ) -> dict[tuple[Kind, str], Change]:
        by_kind: dict[Kind, list[str]] = {}
        for kind, key in targets:
            by_kind.setdefault(kind, []).append(key)
        found: dict[tuple[Kind, str], Change] = {}
        for kind, keys in by_kind.items():
            for start in range(0, len(keys), _KEYS_PER_QUERY):
                chunk = keys[start : start + _KEYS_PER_QUERY]
                marks = ", ".join("?" * len(chunk))
                sql = f"{SELECT_CHANGES} WHERE kind = ? AND key IN ({marks})"
                for change in changes_from_rows(await conn.fetch(sql, kind.value, *chunk)):
                    found[(change.kind, change.key)] = change
        return found

    async def _store(self, conn: Connection, rows: list[Change]) -> None:
        await conn.executemany(_REPLACE, [(c.seq, c.kind.value, *c[2:]) for c in rows])

    async def _insert_new(self, conn: Connection, rows: list[Change]) -> int:
        # executemany's own count is the cursor's; total_changes() counts every
        # statement of the connection (not the targets skipped).
        ((before,),) = await conn.fetch(_TOTAL_CHANGES)
        # A Change binds as it is: its kind is a str, its revoked flag an int.
        await conn.executemany(_INSERT_NEW, rows)
        ((after,),) = await conn.fetch(_TOTAL_CHANGES)
        return int(after) - int(before)

    # -- the token registry (revsync.registry) ------------------------------------------

    async def register(
        self, records: Sequence[TokenRecord], *, rotate: str | None = None
    ) -> list[Change] | None:
        """Record issued tokens and their ``Kind.ISSUED`` changes in one transaction.

        With ``rotate``, first mark that refresh jti rotated, compare-and-set: if it is
        unknown, already rotated or its family revoked, write nothing and return None.
        Records with a family create or extend its row (``revoke_family``).
        """
        requests = registrations_for(records)

        async def work(conn: Connection) -> list[Change] | None:
            if rotate is not None and await conn.execute(_ROTATE, rotate) != 1:
                return None
            changes = await self._add_records(conn, records, requests)
            await conn.executemany(_EXTEND_FAMILY, family_expiry(records).items())
            return changes

        return await self._transaction("write to", work)


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
