"""The per-node, in-memory revocation set consulted on every request.

Two maps answer :meth:`RevocationSet.is_revoked` with plain dict lookups:

- ``jti -> expires_at``: single revoked tokens, each until its own ``exp``;
- ``identity -> cutoff``: "log out everywhere" cut-offs; every token of that
  identity issued at or before the cut-off is revoked until the identity row's
  ``expires_at`` (kept in a third map, off the request path).

Entries are dropped by :meth:`RevocationSet.sweep` only once ``expires_at + leeway``
is in the past, so the set never forgets a revocation of a token that could still
be accepted (docs/design.md, guarantee 8).  Pruning does not scan the set: each entry's
key is also filed in a coarse *expiry bucket* (``expires_at // bucket_seconds``),
and a prune visits only the buckets that can hold expired entries, re-checking each
key's current expiry before deleting it.  A key re-revoked with an expiry in another
bucket is filed there too; its stale copy in the old bucket is skipped when that
bucket comes due.  Keys loaded in bulk into an empty index (a start-up snapshot) are
filed later, a slice at a time (:meth:`RevocationSet.file_pending`), so that filing a
million keys does not delay readiness; a sweep files whatever is left first.

An entry whose ``expires_at`` is not finite (NaN, +inf) never expires: failing
closed beats forgetting.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable

from revsync.changes import Change, Kind
from revsync.stores.base import Snapshot

COMPACT_AFTER = 1024
"""Stale bucket copies always tolerated before a rebuild is considered."""

DEFAULT_BUCKET_SECONDS = 30.0
"""Width of an expiry bucket.  Wider means fewer buckets and a larger partial
bucket to re-check on each prune; entries are removed exactly on time either way."""

_JTI = Kind.JTI
_IDENTITY = Kind.IDENTITY
_ISSUED = Kind.ISSUED
_INF = math.inf


def _finite(expiries: list[float]) -> bool:
    """Whether every expiry is finite, in one C-level pass (unix times cannot overflow
    a sum of a few billion of them)."""
    return math.isfinite(sum(expiries))


def _changes(kind: Kind, revoked: bool, keys: list[str], expiries: list[float]) -> list[Change]:
    return [
        Change(0, kind, k, revoked, e, None, None, 0.0) for k, e in zip(keys, expiries, strict=True)
    ]


class _ExpiryIndex:
    """``key -> expires_at`` plus the expiry buckets that make pruning cheap.

    Invariant: every key in ``expiries`` with a finite expiry ``e`` is in
    ``buckets[e // width]``.  Buckets may also hold stale keys (removed, or moved to
    another bucket); :meth:`prune` skips those.  Every bucket id is in ``heap`` once.
    """

    __slots__ = ("buckets", "expiries", "heap", "pending", "stale", "width")

    def __init__(self, width: float) -> None:
        self.width = width
        self.expiries: dict[str, float] = {}
        self.buckets: dict[float, list[str]] = {}
        self.heap: list[float] = []
        self.stale = 0
        """Stale copies filed in buckets: past as many as there are live keys, the
        buckets are rebuilt, so removed keys never pile up (a flood of forged far-future
        revocations, each shed at the next catch-up, would otherwise stay filed)."""
        self.pending: list[tuple[list[str], list[float], int]] = []
        """Keys loaded in bulk and not filed yet: (keys, their expiries as loaded, how
        many of them are filed).  The invariant above holds for the keys filed; a key
        changed or removed since its load counts as stale from then (see :meth:`set`),
        and its filing makes the stale copy it counted."""

    def set(self, key: str, expires_at: float) -> None:
        """Record ``key`` as expiring at ``expires_at`` (replacing any earlier value)."""
        expiries = self.expiries
        old = expiries.get(key)
        expiries[key] = expires_at
        bucket = expires_at // self.width
        if bucket != bucket:  # NaN: a non-finite expiry, never pruned
            return
        if old is not None:
            if old // self.width == bucket:
                return  # already filed in this bucket
            self._went_stale(1)
        keys = self.buckets.get(bucket)
        if keys is None:
            self.buckets[bucket] = [key]
            heapq.heappush(self.heap, bucket)
        else:
            keys.append(key)

    def discard(self, key: str) -> None:
        """Forget ``key`` (its filed copy goes stale)."""
        if self.expiries.pop(key, None) is not None:
            self._went_stale(1)

    def _went_stale(self, count: int) -> None:
        self.stale += count
        if self.stale > COMPACT_AFTER and self.stale > len(self.expiries):
            self._rebuild()

    def load_empty(self, keys: list[str], expiries: list[float]) -> None:
        """Load finite, distinct ``keys`` into this empty index, to be filed later."""
        self.expiries.update(zip(keys, expiries, strict=True))
        if keys:
            self.pending.append((keys, expiries, 0))

    def file_pending(self, limit: int | None = None) -> int:
        """File up to ``limit`` (None: all) keys loaded in bulk; return how many are left."""
        budget = -1 if limit is None else limit
        buckets, heap, width = self.buckets, self.heap, self.width
        while self.pending and budget != 0:
            keys, expiries, done = self.pending[0]
            end = len(keys) if budget < 0 else min(len(keys), done + budget)
            for key, expires_at in zip(keys[done:end], expiries[done:end], strict=True):
                bucket = expires_at // width
                filed = buckets.get(bucket)
                if filed is None:
                    buckets[bucket] = [key]
                    heapq.heappush(heap, bucket)
                else:
                    filed.append(key)
            if budget > 0:
                budget -= end - done
            if end == len(keys):
                self.pending.pop(0)
            else:
                self.pending[0] = (keys, expiries, end)
        return self.unfiled

    @property
    def unfiled(self) -> int:
        """Keys loaded in bulk and not filed yet."""
        return sum(len(keys) - done for keys, _, done in self.pending)

    def _rebuild(self) -> None:
        """File every live key again, dropping every stale copy: O(live keys)."""
        self.pending.clear()  # filed below with the rest
        width = self.width
        buckets: dict[float, list[str]] = {}
        for key, expires_at in self.expiries.items():
            bucket = expires_at // width
            if bucket == bucket:  # not NaN
                buckets.setdefault(bucket, []).append(key)
        self.buckets = buckets
        self.heap = sorted(buckets)
        self.stale = 0

    def sweep(self, now: float, leeway: float) -> list[str]:
        """Remove and return the keys whose ``expires_at + leeway < now``."""
        if self.pending:
            self.file_pending()
        limit = (now - leeway) // self.width
        expiries, buckets, heap, width = self.expiries, self.buckets, self.heap, self.width
        removed: list[str] = []
        partial: list[tuple[float, list[str]]] = []
        while heap and heap[0] <= limit:
            bucket = heapq.heappop(heap)
            keep: list[str] = []
            filed = buckets.pop(bucket)
            for key in filed:
                expires_at = expiries.get(key)
                if expires_at is None:
                    continue  # removed since it was filed
                if expires_at + leeway < now:
                    del expiries[key]
                    removed.append(key)
                elif expires_at // width == bucket:
                    keep.append(key)  # not expired yet, and this is its bucket
                # else: re-filed in a later bucket; this copy is stale
            kept = list(dict.fromkeys(keep))
            self.stale = max(0, self.stale - (len(filed) - len(removed) - len(kept)))
            if kept:
                partial.append((bucket, kept))
        for bucket, keep in partial:
            buckets[bucket] = keep
            heapq.heappush(heap, bucket)
        return removed

    def clear(self) -> None:
        self.expiries.clear()
        self.buckets.clear()
        self.heap.clear()
        self.pending.clear()
        self.stale = 0


class RevocationSet:
    """Revoked jtis and per-identity cut-offs of one node, kept in memory.

    ``leeway`` is the clock skew the JWT layer tolerates on ``exp``: an entry is kept
    until ``expires_at + leeway``.  ``clock`` returns the current unix time; tests
    pass a controllable one.  Not thread-safe: one event loop owns a set.
    """

    __slots__ = (
        "_allowed",
        "_allowed_index",
        "_arriving",
        "_clock",
        "_cutoffs",
        "_identity_index",
        "_jti_index",
        "_jtis",
        "_leeway",
        "_revoked",
    )

    def __init__(
        self,
        *,
        leeway: float = 0.0,
        clock: Callable[[], float] = time.time,
        bucket_seconds: float = DEFAULT_BUCKET_SECONDS,
    ) -> None:
        if not (math.isfinite(leeway) and leeway >= 0):
            msg = f"leeway must be a finite number >= 0, not {leeway!r}"
            raise ValueError(msg)
        if not (math.isfinite(bucket_seconds) and bucket_seconds > 0):
            msg = f"bucket_seconds must be a finite number > 0, not {bucket_seconds!r}"
            raise ValueError(msg)
        self._leeway = float(leeway)
        self._clock = clock
        self._jti_index = _ExpiryIndex(bucket_seconds)
        self._jtis = self._jti_index.expiries
        """jti -> expires_at (the index's own dict)."""
        self._revoked: set[str] = set()
        """The keys of ``_jtis`` again, for :meth:`is_revoked`: a miss in a large set
        touches one cache line where a dict touches two or three, which at a million
        entries is most of the cost of a lookup.  It may also hold jtis refused on
        arrival (:meth:`refuse_now`) whose message waits for the applier."""
        self._arriving: dict[str, int] = {}
        """jti -> how many of its messages were refused on arrival and not settled yet.
        A count, not a flag: a forged message settled first must not end the refusal
        that a genuine message of the same jti, queued behind it, made.  An entry lives
        only while its messages are queued (the queue is bounded; each is settled)."""
        self._identity_index = _ExpiryIndex(bucket_seconds)
        self._cutoffs: dict[str, float] = {}
        """canonical identity -> cut-off; ``_identity_index`` holds their expiries."""
        self._allowed_index = _ExpiryIndex(bucket_seconds)
        self._allowed = self._allowed_index.expiries
        """Registered (issued) jti -> expires_at: the allowlist (``Kind.ISSUED`` rows)."""

    # -- the request path ---------------------------------------------------------

    def is_revoked(self, jti: object, identity_key: str | None, iat: object) -> bool:
        """Whether a token with these claims is revoked.

        True when ``jti`` is a revoked token id, or when ``identity_key`` has a
        cut-off and ``iat`` is at or before it.  Fails closed on malformed claims: an
        unhashable ``jti``, or (when a cut-off exists) an ``iat`` that is not a finite
        number, count as revoked.  Expired-but-not-pruned entries still answer True;
        the JWT layer refuses those tokens for their ``exp`` anyway.
        """
        try:
            if jti in self._revoked:
                return True
        except TypeError:  # unhashable jti: a malformed token
            return True
        cutoffs = self._cutoffs
        if not cutoffs or identity_key is None:
            return False
        cutoff = cutoffs.get(identity_key)
        if cutoff is None:
            return False
        if type(iat) is int or (type(iat) is float and math.isfinite(iat)):
            return not iat > cutoff  # NaN cut-off: revoked
        return True

    # -- applying changes ---------------------------------------------------------

    def apply(self, change: Change) -> None:
        """Make the set hold what the store's row says for ``change``'s target.

        A revoked jti gets its expiry, a revoked identity its cut-off (the store keeps
        the latest); an unrevoke removes the entry.  A revoke whose ``expires_at +
        leeway`` is already past is not added (an existing entry for the key is left
        to expire by itself).
        """
        self._apply(change, self._clock())

    def load(self, changes: Iterable[Change]) -> int:
        """Apply many changes in order (a start-up snapshot); return how many were read.

        Equivalent to calling :meth:`apply` on each, with the clock read once, but
        faster: live jti revocations are gathered and inserted in bulk.
        """
        now = self._clock()
        leeway = self._leeway
        keys: list[str] = []
        expiries: list[float] = []
        add_key, add_expiry = keys.append, expiries.append
        count = 0
        for change in changes:
            count += 1
            _seq, kind, key, revoked, expires_at, _identity, _cutoff, _created = change
            if revoked and (kind is _JTI or kind == _JTI):
                until = expires_at + leeway
                if until < now:
                    continue  # expired: not added, as in apply()
                if until < _INF:
                    add_key(key)
                    add_expiry(expires_at)
                    continue
            # Anything else takes the general path, after what was gathered so far,
            # so that the order of changes is kept.
            if keys:
                self._insert_jtis(keys, expiries)
                keys.clear()
                expiries.clear()
            self._apply(change, now)
        if keys:
            self._insert_jtis(keys, expiries)
        return count

    def load_snapshot(self, snapshot: Snapshot) -> int:
        """Apply a store's snapshot (``SnapshotReader.snapshot``); return its rows.

        Holds what :meth:`load` of the same rows would (the snapshot leaves out rows
        that had expired), built in bulk: into an empty index, revoked jtis and
        registrations go in with two C-level updates each and are filed in expiry
        buckets later (:meth:`file_pending`).
        """
        keys, expiries = snapshot.revoked
        if _finite(expiries) and not self._jtis:
            self._jti_index.load_empty(keys, expiries)
            self._revoked.update(keys)
        else:
            self.load(_changes(Kind.JTI, True, keys, expiries))
        keys, expiries = snapshot.registered
        if _finite(expiries) and not self._allowed:
            self._allowed_index.load_empty(keys, expiries)
        else:
            self.load(_changes(Kind.ISSUED, False, keys, expiries))
        self.load(snapshot.others)
        return snapshot.rows

    def file_pending(self, limit: int | None = None) -> int:
        """File up to ``limit`` (None: all) keys of a snapshot in their expiry buckets,
        a slice at a time off the start-up path; return how many are left."""
        for index in (self._jti_index, self._allowed_index):
            unfiled = index.unfiled
            left = index.file_pending(limit)
            if limit is not None:
                limit -= unfiled - left
                if limit <= 0:
                    break
        return self.pending

    def _insert_jtis(self, keys: list[str], expiries: list[float]) -> None:
        """Insert live, finite jti revocations, the later of duplicates winning."""
        index = self._jti_index
        jtis, buckets, heap, width = index.expiries, index.buckets, index.heap, index.width
        olds: list[float | None] | None = list(map(jtis.get, keys)) if jtis else None
        jtis.update(zip(keys, expiries, strict=True))
        self._revoked.update(keys)
        heappush = heapq.heappush
        moved = 0
        # An empty set (the start-up snapshot) has no old expiries to compare with.
        previous = [None] * len(keys) if olds is None else olds
        for key, expires_at, old in zip(keys, expiries, previous, strict=True):
            bucket = expires_at // width
            if old is not None:
                if old // width == bucket:
                    continue  # already filed in this bucket
                moved += 1
            filed = buckets.get(bucket)
            if filed is None:
                buckets[bucket] = [key]
                heappush(heap, bucket)
            else:
                filed.append(key)
        if moved:
            index._went_stale(moved)

    def _apply(self, change: Change, now: float) -> None:
        kind, key, revoked, expires_at = change.kind, change.key, change.revoked, change.expires_at
        if kind == _JTI:
            if not revoked:
                self._jti_index.discard(key)
                self._revoked.discard(key)
            elif not expires_at + self._leeway < now:
                self._jti_index.set(key, expires_at)
                self._revoked.add(key)
        elif kind == _IDENTITY:
            if not revoked:
                self._cutoffs.pop(key, None)
                self._identity_index.discard(key)
            elif not expires_at + self._leeway < now:
                if change.cutoff is None:
                    msg = f"an identity revocation needs a cutoff (seq {change.seq})"
                    raise ValueError(msg)
                self._cutoffs[key] = change.cutoff
                self._identity_index.set(key, expires_at)
        elif kind == _ISSUED:
            if revoked:
                self._allowed_index.discard(key)
            elif not expires_at + self._leeway < now:
                self._allowed_index.set(key, expires_at)
        else:
            msg = f"unknown change kind {kind!r} (seq {change.seq})"
            raise ValueError(msg)

    def refuse_now(self, jti: str) -> bool:
        """Refuse ``jti`` from this moment, ahead of the replica; True if the caller
        must :meth:`settle` it once its message is judged (False: the set holds the jti
        already).

        The subscriber's reader calls this when a valid revoke message arrives, so that
        the token is refused at once instead of after the message's turn in the
        applier's queue (docs/design.md, "Refused on arrival").  It adds the jti to the
        keys :meth:`is_revoked` consults and touches nothing else: no expiry, no bucket,
        none of the replica's versions or overlays.  Every rule of the state model
        therefore holds unchanged; the applier applies the message by those rules, then
        calls :meth:`settle`.
        """
        if jti in self._jtis:
            return False  # held already: applying the message can only keep it
        arriving = self._arriving
        arriving[jti] = arriving.get(jti, 0) + 1
        revoked = self._revoked
        if jti in revoked:
            return True  # refused for an earlier message still waiting: counted too
        revoked.add(jti)
        return True

    def settle(self, jti: str) -> None:
        """End a refusal made by :meth:`refuse_now`: the jti stays refused while another
        of its messages refused on arrival waits, or if the set now holds it (the
        replica applied the message, or held the jti already)."""
        arriving = self._arriving
        left = arriving.pop(jti, 0) - 1
        if left > 0:
            arriving[jti] = left
        elif jti not in self._jtis:
            self._revoked.discard(jti)

    def restrict(self, change: Change) -> bool:
        """Merge ``change`` as a restriction only; return True if the set changed.

        What a bus message may do (docs/design.md, "Bus messages only restrict"): a
        revoked jti is added or kept until the *later* of the two expiries; an identity
        cut-off becomes the *later* of the two cut-offs, kept until the later expiry.
        Nothing is ever removed or shortened, whatever the message says.  Changes that
        are not restrictions (unrevokes, token registrations) raise ValueError.
        """
        kind, key, expires_at = change.kind, change.key, change.expires_at
        if not change.revoked or kind == _ISSUED:
            msg = f"only a revocation can be merged as a restriction, not {change!r}"
            raise ValueError(msg)
        if expires_at + self._leeway < self._clock():
            return False  # its token has expired: nothing left to restrict
        if kind == _JTI:
            held = self._jtis.get(key)
            if held is not None and not held < expires_at:
                return False
            self._jti_index.set(key, expires_at)
            self._revoked.add(key)
            return True
        if kind == _IDENTITY:
            if change.cutoff is None:
                msg = f"an identity revocation needs a cutoff (seq {change.seq})"
                raise ValueError(msg)
            held_cutoff = self._cutoffs.get(key)
            held_expiry = self._identity_index.expiries.get(key)
            cutoff = change.cutoff if held_cutoff is None else max(held_cutoff, change.cutoff)
            until = expires_at if held_expiry is None else max(held_expiry, expires_at)
            if cutoff == held_cutoff and until == held_expiry:
                return False
            self._cutoffs[key] = cutoff
            self._identity_index.set(key, until)
            return True
        msg = f"unknown change kind {kind!r} (seq {change.seq})"
        raise ValueError(msg)

    def state(self, kind: Kind, key: str) -> Change:
        """What the set holds for one target, as a change with seq 0.

        A target the set holds nothing for comes back as a tombstone (``revoked``
        False), which :meth:`apply` turns back into "nothing held".
        """
        if kind == _JTI:
            expires_at = self._jtis.get(key)
            if expires_at is not None:
                return Change(0, kind, key, True, expires_at, None, None, 0.0)
        elif kind == _IDENTITY:
            cutoff = self._cutoffs.get(key)
            if cutoff is not None:
                expiry = self._identity_index.expiries[key]
                return Change(0, kind, key, True, expiry, key, cutoff, 0.0)
        elif kind == _ISSUED:
            expires_at = self._allowed.get(key)
            if expires_at is not None:
                return Change(0, kind, key, False, expires_at, None, None, 0.0)
            return Change(0, kind, key, True, 0.0, None, None, 0.0)
        return Change(0, kind, key, False, 0.0, None, None, 0.0)

    @property
    def pending(self) -> int:
        """Keys of a snapshot not yet filed in expiry buckets (:meth:`file_pending`)."""
        return self._jti_index.unfiled + self._allowed_index.unfiled

    def adopt(self, other: RevocationSet) -> None:
        """Take over every entry of ``other`` at once, dropping this set's own.

        A node that must re-read the whole store builds a new set beside the one it
        serves from, then swaps them in one step: a request never sees a half-loaded set.
        """
        for name in ("_jti_index", "_jtis", "_revoked", "_identity_index", "_cutoffs"):
            setattr(self, name, getattr(other, name))
        # Refusals on arrival belong to messages still queued, not to either set's
        # state: they carry over until the applier settles them.
        self._revoked.update(self._arriving)
        self._allowed_index = other._allowed_index
        self._allowed = other._allowed

    # -- expiry -------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> int:
        """Drop entries whose ``expires_at + leeway < now``; return how many.

        (Sweeping is the in-memory clean-up; pruning is the store's, ``Store.prune``.)

        Visits only the expiry buckets that can hold such entries, never the whole
        set.  ``now`` defaults to the clock.
        """
        if now is None:
            now = self._clock()
        jtis = self._jti_index.sweep(now, self._leeway)
        self._revoked.difference_update(jtis)
        if self._arriving:  # a message refused on arrival still waits for its turn
            self._revoked.update(key for key in jtis if key in self._arriving)
        identities = self._identity_index.sweep(now, self._leeway)
        for key in identities:
            del self._cutoffs[key]
        allowed = self._allowed_index.sweep(now, self._leeway)
        return len(jtis) + len(identities) + len(allowed)

    def clear(self) -> None:
        """Forget every entry."""
        self._jti_index.clear()
        self._revoked.clear()
        self._identity_index.clear()
        self._cutoffs.clear()
        self._allowed_index.clear()

    # -- inspection ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._jtis) + len(self._cutoffs)

    @property
    def jti_count(self) -> int:
        """How many revoked jtis the set holds."""
        return len(self._jtis)

    @property
    def identity_count(self) -> int:
        """How many identity cut-offs the set holds."""
        return len(self._cutoffs)

    @property
    def leeway(self) -> float:
        """Seconds an entry outlives its ``expires_at``."""
        return self._leeway

    @property
    def allowed_count(self) -> int:
        """How many registered (issued, unexpired) tokens the set holds."""
        return len(self._allowed)

    def is_allowed(self, jti: object) -> bool:
        """Whether ``jti`` names a registered token (allowlist mode); no I/O."""
        try:
            return jti in self._allowed
        except TypeError:  # unhashable jti: a malformed token
            return False

    def contains_jti(self, jti: str) -> bool:
        """Whether ``jti`` is refused by the set (expired or not; refused on arrival
        included, :meth:`refuse_now`)."""
        return jti in self._revoked

    def expires_at(self, jti: str) -> float | None:
        """The expiry held for ``jti``, or None."""
        return self._jtis.get(jti)

    def cutoff(self, identity_key: str) -> float | None:
        """The cut-off held for an identity, or None."""
        return self._cutoffs.get(identity_key)

    def snapshot_jtis(self) -> dict[str, float]:
        """A copy of ``jti -> expires_at``, for comparing a node's set with the store."""
        return dict(self._jtis)

    def columns(self) -> Snapshot:
        """What the set holds, as a store's snapshot gives it (seq 0): revoked jtis and
        registrations as key and expiry lists, cut-offs as Changes.  No copy of a map is
        made on the way (a checkpoint takes it, revsync._checkpoint)."""
        expiries = self._identity_index.expiries
        cutoffs = [
            Change(0, _IDENTITY, key, True, expiries[key], None, cutoff, 0.0)
            for key, cutoff in self._cutoffs.items()
        ]
        jtis, allowed = self._jtis, self._allowed
        return Snapshot(
            0,
            (list(jtis), list(jtis.values())),
            (list(allowed), list(allowed.values())),
            cutoffs,
            [],
        )

    def snapshot_allowed(self) -> dict[str, float]:
        """A copy of the registered ``jti -> expires_at`` (allowlist mode)."""
        return dict(self._allowed)

    def snapshot_identities(self) -> dict[str, tuple[float, float]]:
        """A copy of ``identity -> (cutoff, expires_at)``."""
        expiries = self._identity_index.expiries
        return {key: (cutoff, expiries[key]) for key, cutoff in self._cutoffs.items()}
