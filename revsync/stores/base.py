"""The interface every durable store implements.

The store is the source of truth.  It numbers every change with a gap-free,
strictly increasing sequence number allocated *inside* the writing transaction
(a counter row, an INCR inside a Lua script), so numbers become visible in the
order they were handed out and a reader that has seen seq N has seen every
change up to N.  See docs/design.md, "Sequence numbers".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from revsync.changes import Change, ChangeRequest, Kind

PAGE_SIZE = 10_000
"""Rows in one page of ``Store.since``: what catch-ups and ``check`` read at a time."""
SNAPSHOT_SPAN = 65_536
"""Seqs one query of ``SnapshotReader.snapshot`` covers: bounds what one aggregate holds."""
ANCHORS = 2
"""Rows a node keeps of the last it read (``HistoryWatch``'s anchors; a snapshot's)."""


class StoreError(Exception):
    """The store could not be reached or refused an operation."""


class PartialWriteError(StoreError):
    """A write made in parts (the Redis store's ``write_many`` of more than
    ``WRITE_CHUNK`` changes) failed after some of its parts had committed.

    ``written`` holds the changes of the parts that committed, each part whole and
    numbered consecutively.  Nothing of the part that failed was written, unless its
    answer was lost after the server had run it: then that part is whole in the store
    too, and catch-ups read it like any other write.
    """

    def __init__(self, message: str, written: list[Change]) -> None:
        super().__init__(message)
        self.written = written


Committed = Callable[[list[Change]], Awaitable[None]]
"""Told the changes of each part of a write as soon as that part is durable
(``Store.write_many``'s ``on_commit``)."""


class HistoryEntry(NamedTuple):
    """One slot of a store's history ring: the write that handed out ``first..last``."""

    first: int
    last: int
    stamp: float
    """The write's ``created_at`` (every change of one write carries the same)."""


class StorePosition(NamedTuple):
    """Which store this is, which generation of its history, and how far it has got.

    A node compares each position with the last one it saw: a different ``store_id``
    or ``epoch``, or a ``head`` below what it has read, means the history it read is
    no longer the store's (docs/design.md, "When the store goes back in time").
    """

    store_id: str
    """A random id given to the store when its schema was created."""
    epoch: int
    """The generation of its history; :meth:`Store.new_epoch` moves it on."""
    head: int
    """The highest seq handed out so far (0 for an empty store)."""
    stamp: float | None
    """When the write that handed out ``head`` happened (its rows' ``created_at``), from
    the store's history ring; None if the ring has no entry for it."""


class Snapshot(NamedTuple):
    """Every live row of a store up to ``seq``, in columns (``SnapshotReader.snapshot``).

    The bulk of a store, revoked jtis and token registrations, comes as two parallel
    lists each (keys, expiries): no object per row but the key and its expiry.  Every
    other live row (identity cut-offs, tombstones) comes as a Change.
    """

    seq: int
    """The seq it covers: every change up to it is in (or superseded by a later one)."""
    revoked: tuple[list[str], list[float]]
    """Revoked jtis (``Kind.JTI``, ``revoked``): keys, and their ``expires_at`` in order."""
    registered: tuple[list[str], list[float]]
    """Token registrations (``Kind.ISSUED``, not ``revoked``): keys and expiries."""
    others: list[Change]
    """Every other row not expired (identity cut-offs, tombstones), in no set order."""
    anchors: list[Change]
    """The newest rows up to ``seq`` (at most ``ANCHORS``, ascending), expired or not:
    what a node reading pages would have kept as anchors (``HistoryWatch.read``)."""

    @property
    def rows(self) -> int:
        """How many rows it holds."""
        return len(self.revoked[0]) + len(self.registered[0]) + len(self.others)


@runtime_checkable
class SnapshotReader(Protocol):
    """A store that can read all its live rows at once (every store revsync ships).

    A start-up backfill reads it instead of paging ``Store.since`` from 0; a store
    without it is paged.  docs/design.md, "The start-up snapshot".
    """

    async def snapshot(self, live_after: float) -> Snapshot:
        """Every row whose ``expires_at`` is at or after ``live_after``, up to the head.

        The rows are those ``since(0)`` pages would return, minus the expired ones:
        a reader that applies them, then pages ``since(snapshot.seq)``, holds what the
        pages alone would have given it.  A row written while the snapshot is read is
        either in it or numbered past ``seq``.
        """


@runtime_checkable
class Store(Protocol):
    """A durable store of revocations.  One instance per node, shared by its tasks."""

    url: str
    """The URL the store was built from, with any password masked."""

    async def connect(self) -> None:
        """Open connections and check that the schema is there.  Idempotent.

        Runs no DDL when the schema exists, so a node's role needs only to read and
        write revsync's tables.  When it is missing, SQLite and Redis create it (one
        process needs no set-up step); PostgreSQL creates it if the role may, and
        otherwise raises StoreError naming ``revsync migrate``.
        """

    async def create_schema(self) -> None:
        """Create whatever of the schema is missing: tables, indexes, the store's
        identity.  Idempotent, safe to run from several processes at once; connects
        for the duration when the store is not connected.  ``revsync migrate`` runs
        it, with a role that may create tables."""

    async def close(self) -> None:
        """Release every connection.  Idempotent; safe after a failed connect."""

    async def write(self, request: ChangeRequest) -> Change:
        """Write one change in its own transaction and return it with its seq.

        A revoke of a target that is already revoked overwrites its row (new seq,
        the later expiry and cut-off win); an unrevoke of a target never revoked
        still writes a tombstone, so the change is numbered and broadcast like any
        other.  Raises StoreError when nothing was written.

        In full (``revsync.stores._common.merge``): a revoke over a tombstone takes the
        request's expiry and cut-off; an unrevoke keeps the old row's ``expires_at``
        (the tombstone must outlive every cached copy of the revocation); a request
        without an identity keeps the row's.  A request with an empty key or a
        non-finite time raises ValueError before anything is written.
        """

    async def write_many(
        self, requests: Sequence[ChangeRequest], *, on_commit: Committed | None = None
    ) -> list[Change]:
        """Write several changes, numbered in order, and return them.

        The SQL stores write them in one transaction, numbered consecutively: all or
        nothing.  The Redis store writes them in parts of at most ``WRITE_CHUNK``
        changes, each one script run (whole, numbered consecutively, with its own entry
        in the history ring), so that no single run blocks Redis for long; a reader may
        see the first parts before the rest is written.  When a part fails after others
        committed it raises :class:`PartialWriteError`, which holds the committed ones.

        ``on_commit`` is awaited with the changes of each part as soon as that part is
        durable (the SQL stores: once, with all of them), to announce them while the
        rest is written.  It must not raise: what it is given is durable already.
        """

    async def get(self, kind: Kind, key: str) -> Change | None:
        """The current row for one target, or None if the store has none."""

    async def since(self, seq: int, limit: int = PAGE_SIZE) -> list[Change]:
        """Rows whose seq is greater than ``seq``, ascending, at most ``limit``.

        Rows include tombstones and rows past their expiry not yet pruned: the
        caller decides.  Paging with the last seq returned as the next ``seq``
        reads every row at least once in its latest state.
        """

    async def head(self) -> int:
        """The highest seq handed out so far (0 for an empty store)."""

    async def position(self) -> StorePosition:
        """The store's identity, epoch and head, read together."""

    async def history(self, seq: int) -> HistoryEntry | None:
        """The entry of the store's history ring in the slot of ``seq``, or None.

        Every write records ``(its first seq, its last seq, its created_at)`` in slot
        ``last % HISTORY_SLOTS`` of a ring, in the same transaction.  See
        ``revsync._store_history.judge`` for what an entry says about ``seq``.
        """

    async def new_epoch(self) -> StorePosition:
        """Start a new generation of the store's history and return the new position.

        For operators, after restoring the store from a backup or failing over to a
        copy that may have lost writes: every node then re-reads the whole store.
        """

    async def prune(self, before: float) -> int:
        """Delete rows whose ``expires_at`` is earlier than ``before``; return how many."""

    async def by_identity(self, identity: str) -> list[Change]:
        """Rows (revocations and tombstones) of one identity, ascending by seq."""

    async def check(self) -> dict[str, int]:
        """Verify the store's invariants (counter >= every row's seq, no duplicate
        seq) and return figures: ``{"rows": ..., "head": ..., "max_row_seq": ...}``.
        Raises StoreError when an invariant does not hold."""
