"""What a node knows of the store's history, and how it notices that the store lost some.

Lost writes are always the newest: a failover loses the tail, a restore returns to an
older point.  So a node checks the newest write whose place in history it verified
(its *frontier*) against the store's history ring (``Store.history``): that write
gone, or its seq naming another write, means the store went back in time.  If the
ring has turned over since, the last rows the node read (its *anchors*) decide.  A
catch-up also compares the positions read before and after it, to notice history
that changed while it read.  docs/design.md, "When the store goes back in time".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from revsync.changes import Change
from revsync.stores.base import ANCHORS, HistoryEntry, Store, StorePosition

# ANCHORS (revsync.stores.base): rows of the last catch-up that the next one re-reads
# when the ring has turned over.
PRUNE_MARGIN = 300.0
"""A row missing from the store means lost history only if it had this many seconds
left to live: a row near its expiry may have been pruned by a node whose clock runs
ahead."""


class HistoryWatch:
    """The store's identity and the newest history a node verified (one per node)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self.position: StorePosition | None = None
        """The store's position as of the last catch-up."""
        self._frontier: tuple[int, float] | None = None
        """(seq, stamp) of the newest write whose place in the store's history this node
        has verified: every change it read up to that seq is still in the store."""
        self._anchors: list[Change] = []

    def read(self, rows: Sequence[Change]) -> None:
        """Note a page of rows just read (the newest become anchors)."""
        self._anchors = [*self._anchors, *rows[-ANCHORS:]][-ANCHORS:]

    async def lost(self, position: StorePosition, seen: int) -> str | None:
        """Why the store no longer holds what this node read from it, or None.

        ``position``: just read; ``seen``: the highest seq this node has read or written.
        """
        known = self.position
        if known is None:
            return None
        if (position.store_id, position.epoch) != (known.store_id, known.epoch):
            return (
                f"store identity or epoch changed from {known.store_id}/{known.epoch} "
                f"to {position.store_id}/{position.epoch}"
            )
        if position.head < seen:
            return f"store head {position.head} is below seq {seen}, which this node has read"
        if self._frontier is not None:
            seq, stamp = self._frontier
            verdict = judge(await self._store.history(seq), seq, stamp)
            if verdict != UNKNOWN:
                return None if verdict == INTACT else f"the write of seq {seq} is gone: {verdict}"
        return await self._anchors_lost()

    async def _anchors_lost(self) -> str | None:
        now = self._clock()
        for anchor in self._anchors:
            row = await self._store.get(anchor.kind, anchor.key)
            if row is None:
                if anchor.expires_at > now + PRUNE_MARGIN:
                    return f"row seq {anchor.seq} ({anchor.kind}) vanished from the store"
            elif row.seq < anchor.seq:
                return f"row seq {anchor.seq} ({anchor.kind}) went back to seq {row.seq}"
            elif row.seq == anchor.seq and row.created_at != anchor.created_at:
                return f"row seq {anchor.seq} ({anchor.kind}) now names another write"
        return None

    def verified(self, before: StorePosition, after: StorePosition, store_seq: int) -> None:
        """A catch-up read the store up to ``store_seq`` between two positions, intact."""
        self.position = after
        for position in (after, before):
            if position.stamp is not None and position.head <= store_seq:
                self._frontier = (position.head, position.stamp)
                return

    def state(self) -> tuple[tuple[int, float] | None, list[Change]]:
        """The newest write verified, as (seq, stamp), and the anchors (a checkpoint's)."""
        return self._frontier, list(self._anchors)

    def resume(
        self,
        position: StorePosition,
        frontier: tuple[int, float] | None,
        anchors: Sequence[Change],
    ) -> None:
        """Take up what a node had verified before (a checkpoint): the next
        :meth:`lost` checks the store against it."""
        self.position = position
        self._frontier = frontier
        self._anchors = list(anchors[-ANCHORS:])

    def restart(self, anchors: Sequence[Change]) -> None:
        """The node re-read the whole store: what it verified before no longer counts."""
        self._frontier = None
        self._anchors = list(anchors[-ANCHORS:])


async def changed_while_reading(
    store: Store, before: StorePosition, after: StorePosition
) -> str | None:
    """Why the store's history changed between two positions read around a catch-up."""
    if (after.store_id, after.epoch) != (before.store_id, before.epoch):
        return "the store's identity or epoch changed while this node read it"
    if after.head < before.head:
        return f"the store's head went back from {before.head} to {after.head} while read"
    if before.stamp is None:
        return None
    if after.head == before.head:
        if after.stamp == before.stamp:
            return None
        return f"seq {before.head} names another write than when this node began reading"
    verdict = judge(await store.history(before.head), before.head, before.stamp)
    if verdict in (INTACT, UNKNOWN):
        return None
    return f"the write of seq {before.head} vanished while this node read the store: {verdict}"


INTACT = "intact"
UNKNOWN = "unknown"


def judge(entry: HistoryEntry | None, seq: int, stamp: float) -> str:
    """What the ring entry in the slot of ``seq`` says of the write that handed out
    ``seq`` at ``stamp``: INTACT, UNKNOWN (the slot was reused by a later write), or
    why that write is gone."""
    if entry is None:
        return "its slot in the history ring is empty"
    if entry.last == seq:
        return INTACT if entry.stamp == stamp else "its seq now names another write"
    if entry.first <= seq < entry.last:
        return "its seq now lies inside another write"
    if entry.last < seq:
        return "its slot holds an older write"
    return UNKNOWN
