"""What the store modules share: request checks, the merge rule, rows to Changes,
``write``, URL masking.

The merge rule says what row a change leaves behind.  SQLite and PostgreSQL apply
it here, in Python, inside their writing transaction (to the targets they already
had: insert first, ``plan_new`` and ``merge_conflicts``); the Redis store's write
script mirrors it in Lua (``write_changes`` in ``revsync/stores/lua/rows.lua``).  The
contract tests hold all three to the same model.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from revsync.changes import Change, ChangeRequest, Kind
from revsync.stores.base import Committed, StoreError

KINDS: dict[str, Kind] = {kind.value: kind for kind in Kind}
"""Stored kind strings back to ``Kind``: a dict lookup is much cheaper than ``Kind(s)``."""

HISTORY_SLOTS = 4096
"""Slots of the history ring (``Store.history``): a node can check that the write at its
cursor is still in the store's history as long as fewer writes than this happened
since it last looked."""

_BOOL = (False, True)


class WriteMany(ABC):
    """``write`` and ``write_many`` of every store: check the requests, then write them."""

    async def write(self, request: ChangeRequest) -> Change:
        """Write one change (see ``Store.write``)."""
        return (await self.write_many([request]))[0]

    async def write_many(
        self, requests: Sequence[ChangeRequest], *, on_commit: Committed | None = None
    ) -> list[Change]:
        """Write several changes, numbered in order (see ``Store.write_many``)."""
        checked = [check_request(request) for request in requests]
        return await self._write_checked(checked, on_commit) if checked else []

    @abstractmethod
    async def _write_checked(
        self, requests: list[ChangeRequest], on_commit: Committed | None = None
    ) -> list[Change]:
        """Write checked, non-empty ``requests`` (see ``Store.write_many``)."""


def changes_from_rows(rows: Iterable[Sequence[Any]]) -> list[Change]:
    """Changes from rows of the columns of ``Change`` (``revoked`` a bool or 0/1): the
    one per-row step on the snapshot path."""
    # tuple.__new__ is what Change._make does, minus a Python-level call per row.
    new, kinds, bools = tuple.__new__, KINDS, _BOOL
    return [
        new(Change, (r[0], kinds[r[1]], r[2], bools[r[3]], r[4], r[5], r[6], r[7])) for r in rows
    ]


def check_request(request: ChangeRequest) -> ChangeRequest:
    """Return ``request`` with its kind a ``Kind`` and its times floats, or raise ValueError."""
    given, key, revoked, expires_at, _, cutoff = request
    if (
        # Already in shape (every request revsync itself builds): returned as it is,
        # without building another (a batch of 100,000 pays per request).
        given.__class__ is Kind
        and key.__class__ is str
        and key
        and revoked.__class__ is bool
        and expires_at.__class__ is float
        and expires_at - expires_at == 0.0  # finite: inf - inf and nan - nan are nan
        and (cutoff is None or (cutoff.__class__ is float and cutoff - cutoff == 0.0))
    ):
        return request
    kind = KINDS.get(request.kind)
    if kind is None:
        msg = f"kind must be one of {sorted(KINDS)}, not {request.kind!r}"
        raise ValueError(msg)
    if not isinstance(request.key, str) or not request.key:
        msg = f"key must be a non-empty string, not {request.key!r}"
        raise ValueError(msg)
    cutoff = None if request.cutoff is None else _finite("cutoff", request.cutoff)
    return ChangeRequest(
        kind,
        request.key,
        bool(request.revoked),
        _finite("expires_at", request.expires_at),
        request.identity,
        cutoff,
    )


def _finite(name: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        msg = f"{name} must be a finite unix time, not {value!r}"
        raise ValueError(msg)
    return number


def merge(old: Change | None, request: ChangeRequest, seq: int, now: float) -> Change:
    """The row left behind when ``request`` (numbered ``seq``) is written over ``old``.

    - A revoke over a revoked row keeps the later ``expires_at`` and ``cutoff``.
    - A revoke over a tombstone (or nothing) takes the request's values.
    - An unrevoke writes a tombstone that keeps the old row's ``expires_at`` (it must
      outlive every cached copy of the revocation) and, unless given, its ``cutoff``.
    - ``identity`` is the request's, or the old row's when the request has none.
    """
    identity = request.identity
    if old is None:
        return Change(
            seq,
            request.kind,
            request.key,
            request.revoked,
            request.expires_at,
            identity,
            request.cutoff,
            now,
        )
    if identity is None:
        identity = old.identity
    expires_at, cutoff = request.expires_at, request.cutoff
    if not request.revoked:
        expires_at = old.expires_at
        cutoff = old.cutoff if cutoff is None else cutoff
    elif old.revoked:
        expires_at = max(expires_at, old.expires_at)
        if old.cutoff is not None and (cutoff is None or old.cutoff > cutoff):
            cutoff = old.cutoff
    return Change(
        seq, request.kind, request.key, request.revoked, expires_at, identity, cutoff, now
    )


def apply_all(
    old: dict[tuple[Kind, str], Change],
    requests: list[ChangeRequest],
    first_seq: int,
    now: float,
) -> tuple[list[Change], list[Change]]:
    """Merge ``requests`` in order from ``first_seq``: (every change, the final row per target)."""
    current = dict(old)
    changes: list[Change] = []
    for offset, request in enumerate(requests):
        target = (request.kind, request.key)
        change = merge(current.get(target), request, first_seq + offset, now)
        current[target] = change
        changes.append(change)
    final = {(change.kind, change.key): change for change in changes}
    return changes, list(final.values())


def plan_new(
    requests: list[ChangeRequest], first_seq: int, now: float
) -> tuple[list[Change], list[Change]]:
    """``apply_all`` over a store that holds none of the targets: the insert-first half
    of a write (every change, the final row per target).

    The usual batch names each target once; then every change is its own final row,
    built without a call per request.
    """
    new = tuple.__new__
    changes = [new(Change, (first_seq + i, *r, now)) for i, r in enumerate(requests)]
    # Distinct keys mean distinct targets; the set of keys alone is the cheaper test.
    count = len(changes)
    if len({c[2] for c in changes}) == count or len({(c[1], c[2]) for c in changes}) == count:
        return changes, changes
    return apply_all({}, requests, first_seq, now)


def merge_conflicts(
    changes: list[Change],
    requests: list[ChangeRequest],
    old: dict[tuple[Kind, str], Change | None],
    first_seq: int,
    now: float,
) -> list[Change]:
    """Redo, in ``changes`` (from :func:`plan_new`), the changes of the targets of ``old``
    (those the store already had: its row, or None if it vanished meanwhile) merged over
    that row, as ``apply_all`` would have; return those targets' final rows.

    Every other target's changes are the same whether merged over nothing or not merged
    at all, so the result equals ``apply_all(rows the store had, requests, ...)``.
    """
    current = dict(old)
    for offset, request in enumerate(requests):
        target = (request.kind, request.key)
        if target in current:
            change = merge(current[target], request, first_seq + offset, now)
            current[target] = changes[offset] = change
    return [row for row in current.values() if row is not None]


def check_figures(counter: int | None, rows: int, max_row_seq: int, url: str) -> dict[str, int]:
    """The ``check()`` result, or StoreError when the counter is missing or behind a row."""
    if counter is None:
        msg = f"store at {url} has no sequence counter; was its schema created by revsync?"
        raise StoreError(msg)
    if counter < max_row_seq:
        msg = f"store at {url}: counter {counter} is behind the highest row seq {max_row_seq}"
        raise StoreError(msg)
    return {"rows": rows, "head": counter, "max_row_seq": max_row_seq}


@contextmanager
def translate(errors: tuple[type[BaseException], ...], what: Callable[[], str]) -> Iterator[None]:
    """Re-raise driver ``errors`` as StoreError with the message ``what()``, chaining the cause."""
    try:
        yield
    except errors as exc:
        msg = f"{what()}: {type(exc).__name__}: {exc}"
        raise StoreError(msg) from exc
