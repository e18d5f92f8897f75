"""A node's copy of the store: the in-memory set, versioned per target.

The state model (docs/design.md, "The state model"):

- **Store state is versioned.**  Every target's state on a node is the state of one
  store change, and a change read from the store (snapshot, catch-up, a doorbell's
  read, the result of this node's own write) replaces it only when its seq is
  higher, whichever path it came by and in whatever order the paths finish.  The
  version of most targets is implicit: ``store_seq`` says every change up to it has
  been read, so a target's state is at least that new.  Targets whose state came
  from beyond ``store_seq`` (a local write, a doorbell) carry an explicit version in
  ``_ahead`` until a catch-up passes it.
- **Bus messages only restrict.**  A revoke or revoke_identity message is merged with
  :meth:`RevocationSet.restrict` (revoked wins, the later expiry, the later cut-off)
  and remembered as an *overlay*: the message's seq, the restriction it carried and
  the store state beneath it.  A store change at or past the overlay's seq replaces
  both; an older one replaces the state beneath and the overlay is merged on top again.
- **Unconfirmed overlays are shed.**  A genuine message names a change that was
  committed before it was sent, so the first catch-up that starts after it arrived
  reads that change (or a later one of the same target).  An overlay that such a
  catch-up did not confirm was forged (or its change was lost by the store): the
  state beneath it is restored, and the message counted as ``unconfirmed``.  A
  forged message can therefore refuse a token only until the next catch-up.
- **Loosening messages are doorbells.**  An unrevoke, unrevoke_identity or issue
  message is never applied as sent: the node reads that target from the store and
  applies what the store says, versioned like any store read.
- **The store can go back in time.**  Each catch-up asks ``revsync._store_history``
  whether the history this node read is still the store's, before and after it reads,
  and checks that the changes it applied from beyond its cursor are read again when
  passed.  If not (a failover that lost writes, a restore from a backup), the node
  re-reads everything into a fresh set and swaps it in.

The first catch-up of a node reads the store's snapshot (``SnapshotReader.snapshot``:
every live row up to a seq, in columns) into the set in bulk, then pages on from its
seq; a re-read does the same into its fresh set.  docs/design.md, "The start-up snapshot".

Cursors: ``store_seq`` moves only on store reads; ``bus_seq`` also on contiguous bus
events, and says where the next event is expected (an event beyond ``bus_seq + 1``
is a gap).  All changes to the set happen under ``lock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from revsync import _checkpoint
from revsync._logging import get_logger
from revsync._revocation_set import RevocationSet
from revsync._stats import SyncStats
from revsync._store_history import PRUNE_MARGIN, HistoryWatch, changed_while_reading
from revsync.changes import Change, Kind
from revsync.events import Op, RevocationEvent
from revsync.stores.base import ANCHORS, PAGE_SIZE, SnapshotReader, Store, StorePosition

logger = get_logger()

REREAD_ATTEMPTS = 3
"""Times a re-read starts over when the store's history changes while it reads."""
PENDING_LIMIT = 10_000
"""Overlays held before the node asks for a catch-up to confirm or shed them."""
LIVE_MARGIN = 1.0
"""Seconds before "expired" that a snapshot starts reading: ``expires_at + leeway < now``
and ``expires_at < now - leeway`` may round apart, and a live row must never be left out
(one that expired less than this ago is swept later)."""

DOORBELLS = frozenset((Op.UNREVOKE, Op.UNREVOKE_IDENTITY, Op.ISSUE))
"""Messages that could let a token in: re-read from the store, never obeyed as sent."""
Target = tuple[Kind, str]


class WriteMark(NamedTuple):
    """Where a node stood just before it wrote: see :meth:`Replica.apply_local`."""

    resets: int
    seq: int


class Verdict(enum.Enum):
    """What applying one bus event told the subscriber."""

    APPLIED = "applied"
    """Applied (or confirmed by a doorbell read), and in sequence."""
    GAP = "gap"
    """Applied, but events before it are missing: catch up now."""
    DUPLICATE = "duplicate"
    """Nothing new: this node already holds that change or a later one."""
    SUSPECT = "suspect"
    """A restriction the node should already have read and did not: forged, or the
    store went back in time.  Worth a (rate-limited) catch-up, which tells which."""
    UNCONFIRMED = "unconfirmed"
    """A doorbell the store does not confirm: dropped."""


@dataclass(slots=True)
class _Overlay:
    """A bus restriction not yet confirmed by a store read."""

    seq: int
    """The highest seq of the messages merged into it."""
    round: int
    """The catch-up round in which the last of them arrived."""
    restriction: Change
    """Everything the messages restrict, merged."""
    beneath: Change
    """The store state the restriction was merged over (restored if it is shed)."""


@contextlib.contextmanager
def _collector_paused(pause: bool) -> Iterator[None]:
    """Pause the cyclic garbage collector (if it was on) for the duration."""
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _merge(a: Change, b: Change) -> Change:
    """Two restrictions of one target as one: the later expiry and cut-off."""
    cutoffs = [c for c in (a.cutoff, b.cutoff) if c is not None]
    cutoff = max(cutoffs) if cutoffs else None
    return a._replace(
        seq=max(a.seq, b.seq), expires_at=max(a.expires_at, b.expires_at), cutoff=cutoff
    )


class Replica:
    """Keeps a RevocationSet equal to the store (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        revocations: RevocationSet,
        stats: SyncStats,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        checkpoint: Path | None = None,
    ) -> None:
        self.store = store
        self.checkpoint = checkpoint
        """The node's checkpoint file (REVSYNC_CHECKPOINT_PATH), or None."""
        self._checkpointed: tuple[int, int] | None = None
        """(resets, store_seq) of the last checkpoint read or written."""
        self.revocations = revocations
        self.stats = stats
        self.lock = asyncio.Lock()
        self.store_seq = 0
        self.bus_seq = 0
        self.last_store_sync: float | None = None
        self.history = HistoryWatch(store, clock=clock)
        self._monotonic = monotonic
        self._clock = clock
        self._ahead: dict[Target, Change] = {}
        """Store changes applied from beyond ``store_seq`` (this node's writes, doorbell
        reads), until a catch-up reads past them and finds them (or a later change of
        the same target) in the store."""
        self._overlays: dict[Target, _Overlay] = {}
        self._round = 0
        self.resets = 0
        """How many times this node re-read the whole store (its history generation)."""
        self.wants_catch_up = False
        """Set when something this node saw only a catch-up can explain (the subscriber
        then catches up at once)."""
        self._lost_own_write: str | None = None
        """Why the next catch-up must re-read the whole store, found by a local write."""

    # -- reading the store ----------------------------------------------------------

    async def catch_up(self) -> int:
        """Read every change after ``store_seq`` from the store and apply it.

        Re-reads everything instead when the store lost history, whether it was lost
        before the catch-up or while it read.  Returns how many rows were read.  Raises
        the store's error if it fails; cursors then stay where the last applied page
        left them.
        """
        self._round += 1
        started = self._round
        # What this node had read or written before asking: a write of its own that
        # commits after the position is read must not look like a store gone back.
        seen = self._seen()
        before = await self.store.position()
        reason = self._lost_own_write or await self.history.lost(before, seen)
        total = 0
        if reason is None:
            # A backfill makes objects by the million: the cyclic garbage collector
            # would rescan them all over and over (measured: 4.2 s instead of 2.6 s for
            # 1M rows from SQLite, paged).  None of them forms a cycle.
            with _collector_paused(self.store_seq == 0):
                total, reason = await self._read_pages()
        after = await self.store.position()
        if reason is None:
            reason = await changed_while_reading(self.store, before, after)
        if reason is not None:
            total, before, after = await self._reread(reason)
        self.history.verified(before, after, self.store_seq)
        async with self.lock:
            self._shed(started)
        # No genuine event is numbered past the head the store just showed: a cursor
        # that forged messages moved beyond it comes back.
        self.bus_seq = max(min(self.bus_seq, after.head), self.store_seq)
        self.last_store_sync = self._monotonic()
        return total

    async def _read_pages(self) -> tuple[int, str | None]:
        """Read and apply pages up to the head; return (rows read, lost history or None).

        A node that has read nothing yet starts from the store's snapshot.
        """
        total = await self._read_snapshot()
        seen: dict[Target, int] = {}
        with contextlib.ExitStack() as paused:
            while True:
                async with self.lock:
                    rows = await self.store.since(self.store_seq, PAGE_SIZE)
                    if not rows:
                        break
                    self._load(rows, seen)
                    self.store_seq = rows[-1].seq
                    self.history.read(rows)
                    total += len(rows)
                if len(rows) < PAGE_SIZE:
                    break
                if total == len(rows):
                    # A long catch-up (a mass revocation read back): as for a snapshot.
                    paused.enter_context(_collector_paused(True))
        async with self.lock:
            return total, self._pass_ahead(seen)

    async def _read_snapshot(self) -> int:
        """Load the store's snapshot if this node has read nothing and holds no explicit
        version (then no per-row seq is needed to order what it holds); return its rows."""
        if not isinstance(self.store, SnapshotReader):
            return 0  # a store of the application's own: paged from 0
        async with self.lock:
            if self.store_seq or self._ahead or self._overlays:
                return 0
            if self.checkpoint is not None and await self._resume(self.checkpoint):
                return 0  # read nothing from the store yet: the pages from its seq follow
            snapshot = await self.store.snapshot(self._live_after())
            rows = self.revocations.load_snapshot(snapshot)
            self.store_seq = snapshot.seq
            self.history.read(snapshot.anchors)
        return rows

    async def _resume(self, path: Path) -> bool:
        """Load the checkpoint in ``path`` if the store confirms it; say whether it did."""
        checkpoint = await _checkpoint.load(path, self.store, self._clock)
        if checkpoint is None:
            return False
        self.revocations.load_snapshot(checkpoint.snapshot)
        self.store_seq = checkpoint.position.head
        self.history.resume(checkpoint.position, checkpoint.frontier, checkpoint.anchors)
        self._checkpointed = (self.resets, self.store_seq)
        return True

    async def save_checkpoint(self) -> None:
        """Write the checkpoint file, if there is one to keep and the node's state is the
        store's at ``store_seq`` (nothing held from beyond it) and has moved since."""
        position = self.history.position
        if self.checkpoint is None or position is None:
            return
        async with self.lock:
            if self._ahead or self._overlays or self._lost_own_write:
                return
            if self._checkpointed == (self.resets, self.store_seq):
                return
            frontier, anchors = self.history.state()
            at = StorePosition(position.store_id, position.epoch, self.store_seq, None)
            checkpoint = _checkpoint.capture(self.revocations, at, frontier, anchors)
            self._checkpointed = (self.resets, self.store_seq)
        await _checkpoint.save(self.checkpoint, checkpoint)

    def _live_after(self) -> float:
        return self._clock() - self.revocations.leeway - LIVE_MARGIN

    def _load(self, rows: list[Change], seen: dict[Target, int]) -> None:
        """Apply one page of store rows (each a different target, all past store_seq)."""
        ahead, overlays = self._ahead, self._overlays
        if not ahead and not overlays:
            self.revocations.load(rows)
            return
        plain = []
        for row in rows:
            target = (row.kind, row.key)
            if target in ahead or target in overlays:
                mine = ahead.get(target)
                if mine is not None and mine.seq == row.seq and mine.created_at != row.created_at:
                    # The seq of a change this node holds now names another write.
                    seen[target] = -1
                    continue
                seen[target] = row.seq
                self._confirm(row)
            else:
                plain.append(row)
        self.revocations.load(plain)

    def _seen(self) -> int:
        """The highest seq this node has read or written."""
        return max(self.store_seq, max((c.seq for c in self._ahead.values()), default=0))

    def _pass_ahead(self, seen: dict[Target, int]) -> str | None:
        """Forget the changes applied from beyond the cursor that it has now passed.

        Each must have been read again on the way (its row, or a later change of the
        same target): a change this node wrote or read that the store no longer has
        means the store lost history.  A row near its expiry may have been pruned.
        """
        floor, now = self.store_seq, self._clock()
        kept: dict[Target, Change] = {}
        for target, change in self._ahead.items():
            if seen.get(target) == -1:
                return f"seq {change.seq} ({target[0]}), which this node read, names another write"
            if change.seq > floor:
                kept[target] = change
            elif seen.get(target, 0) < change.seq and change.expires_at > now + PRUNE_MARGIN:
                return f"seq {change.seq} ({target[0]}), which this node read, is gone"
        self._ahead = kept
        return None

    async def _reread(self, reason: str) -> tuple[int, StorePosition, StorePosition]:
        """Re-read the whole store into a fresh set and swap it in.

        Holds the lock throughout, so a local write made meanwhile is applied to the
        new set, after it, never lost with the old one.  Reads again if the store's
        history changed while it read.
        """
        old = self.revocations
        async with self.lock:
            for _ in range(REREAD_ATTEMPTS):
                before = await self.store.position()
                fresh, last, anchors, total = await self._read_all()
                after = await self.store.position()
                if await changed_while_reading(self.store, before, after) is None:
                    break
            lost = _dropped(old, fresh)
            old.adopt(fresh)
            self.store_seq = self.bus_seq = last
            self._ahead.clear()
            self._overlays.clear()
            self.history.restart(anchors)
            self._lost_own_write = None
            self.resets += 1
        self.stats.store_resets += 1
        logger.error(
            "revsync.store_history_lost",
            reason=reason,
            action="re-read the whole store",
            rows=total,
            seq=last,
            entries_dropped=lost,
        )
        return total, before, after

    async def _read_all(self) -> tuple[RevocationSet, int, list[Change], int]:
        fresh = RevocationSet(leeway=self.revocations.leeway, clock=self._clock)
        total, last = 0, 0
        anchors: list[Change] = []
        with _collector_paused(True):
            if isinstance(self.store, SnapshotReader):
                snapshot = await self.store.snapshot(self._live_after())
                total, last = fresh.load_snapshot(snapshot), snapshot.seq
                anchors = list(snapshot.anchors)
                del snapshot  # its columns are the set's now; nothing else holds them
            while rows := await self.store.since(last, PAGE_SIZE):
                fresh.load(rows)
                last = rows[-1].seq
                anchors = [*anchors, *rows[-ANCHORS:]][-ANCHORS:]
                total += len(rows)
                if len(rows) < PAGE_SIZE:
                    break
        return fresh, last, anchors, total

    # -- applying store state -------------------------------------------------------

    def write_mark(self) -> WriteMark:
        """Taken just before this node writes to the store; given to :meth:`apply_local`."""
        return WriteMark(self.resets, self.store_seq)

    async def apply_local(self, *changes: Change, mark: WriteMark | None = None) -> None:
        """Apply changes this node just wrote to the store (versioned like any read).

        ``mark``: :meth:`write_mark` from just before the write.  If the node has
        re-read the whole store since, the write may belong to the history the store
        lost: its targets are read back from the store instead.  A change numbered at
        or below what the node had read before writing proves that the store went back
        in time (in an unbroken history a new write is numbered past the head): it is
        applied (the node refuses its own revoked token at once) and the next
        catch-up re-reads the whole store.  Never raises: the write is durable already.
        """
        async with self.lock:
            # Compared under the lock: a re-read that held it while this waited has
            # already judged the write (and may have read it at a seq below the mark).
            if mark is None or mark.resets == self.resets:
                self._apply_own(changes, mark)
                return
        await self._reconfirm(changes)

    def _apply_own(self, changes: tuple[Change, ...], mark: WriteMark | None) -> None:
        """``apply_local`` under the lock, no re-read since the write began."""
        for change in changes:
            if self._confirm(change):
                continue
            if mark is not None and change.kind is not Kind.ISSUED and change.seq <= mark.seq:
                self.revocations.apply(change)
                self._lost_own_write = (
                    f"this node's write was numbered {change.seq}, at or below seq "
                    f"{mark.seq} which it had read before writing"
                )
                self.wants_catch_up = True

    async def _reconfirm(self, changes: tuple[Change, ...]) -> None:
        """Read the targets of ``changes`` back from the store and apply what it says."""
        try:
            rows = [await self.store.get(c.kind, c.key) for c in changes]
        except Exception as exc:
            # The store failed right after a write it committed: hold the write's own
            # revocations (refusing is safe) until a catch-up tells the truth.
            logger.warning("revsync.reconfirm_failed", error=f"{type(exc).__name__}: {exc}")
            async with self.lock:
                for change in changes:
                    if change.revoked and change.kind is not Kind.ISSUED:
                        self._overlay(change)
                self.wants_catch_up = True
            return
        async with self.lock:
            for row in rows:
                if row is not None:
                    self._confirm(row)

    def _confirm(self, change: Change) -> bool:
        """Apply a change read from the store if it is newer than what is held; say so."""
        if change.kind is Kind.ISSUED:
            # Registrations never change once written: nothing to order.
            self.revocations.apply(change)
            return True
        target = (change.kind, change.key)
        if change.seq <= self._confirmed(target):
            return False  # this node holds that change already, or a later one
        overlay = self._overlays.get(target)
        self.revocations.apply(change)
        if overlay is not None:
            if change.seq >= overlay.seq:
                del self._overlays[target]  # confirmed, or superseded by the store
            else:
                overlay.beneath = change
                self.revocations.restrict(overlay.restriction)
        if change.seq > self.store_seq:
            self._ahead[target] = change
        return True

    def _shed(self, started: int) -> None:
        """Drop overlays that the catch-up of round ``started`` should have confirmed."""
        unconfirmed = [t for t, o in self._overlays.items() if o.round < started]
        for target in unconfirmed:
            overlay = self._overlays.pop(target)
            self.revocations.apply(overlay.beneath)
            self.stats.rejected["unconfirmed"] += 1
            logger.warning(
                "revsync.restriction_unconfirmed",
                kind=str(target[0]),
                seq=overlay.seq,
                action="dropped: the store holds no such change",
            )

    # -- applying bus events --------------------------------------------------------

    async def apply_event(self, event: RevocationEvent) -> Verdict:
        """Apply one validated bus event (see the module docstring for the rules)."""
        if event.op in DOORBELLS:
            verdict = await self._ring(event)
        else:
            async with self.lock:
                verdict = self._restrict(event)
        if verdict is Verdict.DUPLICATE:
            self.stats.duplicates += 1
        if verdict is not Verdict.APPLIED:
            return verdict
        self.stats.applied += 1
        if event.seq == self.bus_seq + 1:
            self.bus_seq = event.seq
        elif event.seq > self.bus_seq + 1:
            self.stats.gaps += 1
            return Verdict.GAP
        if len(self._overlays) > PENDING_LIMIT:
            return Verdict.GAP  # a catch-up confirms or sheds them
        return Verdict.APPLIED

    def _confirmed(self, target: Target) -> int:
        """A seq this node's store state for ``target`` is at least as new as."""
        ahead = self._ahead.get(target)
        return self.store_seq if ahead is None else ahead.seq

    def _restrict(self, event: RevocationEvent) -> Verdict:
        target = (event.kind, event.key)
        change = event.to_change()
        if change.expires_at + self.revocations.leeway < self._clock():
            return Verdict.DUPLICATE  # its token has expired: nothing to restrict
        if event.seq <= self._confirmed(target):
            if target in self._ahead:
                return Verdict.DUPLICATE  # this node holds a later store change of it
            # Read past already, yet perhaps not this: a late copy of a change since
            # superseded (then it restricts nothing), a forgery, or a store that went
            # back in time.  Only a catch-up can tell, so one is asked for.
            if _adds_to(self.revocations.state(change.kind, change.key), change):
                self.stats.rejected["stale"] += 1
                return Verdict.SUSPECT
            return Verdict.DUPLICATE
        return Verdict.APPLIED if self._overlay(change) else Verdict.DUPLICATE

    def _overlay(self, change: Change) -> bool:
        """Merge a restriction not confirmed by a store read; False if it adds nothing."""
        target = (change.kind, change.key)
        overlay = self._overlays.get(target)
        if overlay is None:
            beneath = self.revocations.state(change.kind, change.key)
            self._overlays[target] = _Overlay(change.seq, self._round, change, beneath)
        elif change.seq > overlay.seq:
            overlay.seq, overlay.round = change.seq, self._round
            overlay.restriction = _merge(overlay.restriction, change)
        elif _adds_to(overlay.restriction, change):
            overlay.restriction = _merge(overlay.restriction, change)
        else:
            return False
        self.revocations.restrict(change)
        return True

    async def _ring(self, event: RevocationEvent) -> Verdict:
        """A doorbell: re-read the target from the store and apply what it says."""
        if event.seq <= self._confirmed((event.kind, event.key)):
            return Verdict.DUPLICATE
        resets = self.resets
        row = await self.store.get(event.kind, event.key)
        if row is None or row.seq < event.seq:
            # The store holds no such change: a forged or stray doorbell.  It must not
            # move bus_seq, or a genuine event carrying that seq would look in sequence.
            self.stats.rejected["unconfirmed_doorbell"] += 1
            return Verdict.UNCONFIRMED
        async with self.lock:
            if resets == self.resets:  # else the re-read has just read it anyway
                self._confirm(row)
        return Verdict.APPLIED

    # -- inspection -------------------------------------------------------------------

    @property
    def overlay_count(self) -> int:
        """Bus restrictions not yet confirmed by a store read."""
        return len(self._overlays)


def _dropped(old: RevocationSet, new: RevocationSet) -> int:
    """How many revocations ``old`` holds that ``new`` does not (the store lost them)."""
    jtis = old.snapshot_jtis().keys() - new.snapshot_jtis().keys()
    identities = old.snapshot_identities().keys() - new.snapshot_identities().keys()
    return len(jtis) + len(identities)


def _adds_to(held: Change, restriction: Change) -> bool:
    """Whether merging ``restriction`` over ``held`` would restrict anything more."""
    if not held.revoked:
        return True
    if restriction.expires_at > held.expires_at:
        return True
    return restriction.cutoff is not None and (
        held.cutoff is None or restriction.cutoff > held.cutoff
    )
