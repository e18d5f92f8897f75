"""Counters a node keeps about its sync, read by ``RevSync.status()`` and /metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields


@dataclass(slots=True)
class SyncStats:
    """Monotonic counters; plain ints, so updating them costs nothing measurable."""

    published: int = 0
    publish_failures: int = 0
    applied: int = 0
    duplicates: int = 0
    gaps: int = 0
    resyncs: int = 0
    resync_failures: int = 0
    reconnects: int = 0
    heartbeats: int = 0
    foreign_pings: int = 0
    """Pings received that were not this node's own awaited ones: an older node's on
    the shared channel, or a replay on this node's ping channel."""
    swept: int = 0
    store_pruned: int = 0
    store_write_failures: int = 0
    """Store writes (revocations, token registrations) that raised StoreError."""
    store_resets: int = 0
    """Times the node found the store had lost history and re-read all of it."""
    deferred_doorbells: int = 0
    """Doorbells answered by a catch-up instead of a store read each (a backlog)."""
    queue_overflows: int = 0
    """Messages dropped because the subscriber's queue was full (a catch-up follows)."""
    backfill_seconds: float | None = None
    """How long the start-up backfill took: from the start of the catch-up that made
    the node backfilled to its end (``status()["backfill"]``; not a counter)."""
    backfill_rows: int | None = None
    """Rows that backfill read (snapshot and pages)."""
    rejected: Counter[str] = field(default_factory=Counter)
    # Called with the propagation lag in seconds of every event applied from the
    # bus (revsync.prometheus feeds a histogram from it).
    lag_observers: list[Callable[[float], None]] = field(default_factory=list)
    # Called with the duration in seconds of every store write that finished or
    # failed (revsync.prometheus feeds revsync_store_write_duration_seconds from it).
    write_observers: list[Callable[[float], None]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """Every counter by name (``status()["counters"]``), rejections by reason."""
        counters: dict[str, object] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.type == "int"
        }
        counters["rejected"] = dict(self.rejected)
        return counters
