"""Reading a store's live rows at once (``SnapshotReader.snapshot``): what the stores share.

The bulk of any store is revoked jtis (and, with the token registry, registrations).
A snapshot reads them as columns: per span of seqs, the store aggregates their keys
and their expiries (one JSON array, one comma-separated text, or one array each),
which are parsed in C (``json.loads``, ``str.split``, ``float``): no tuple per row,
only the key and its expiry, which the set keeps.  The few other live rows (identity
cut-offs, tombstones) are listed by seq and read as Changes.

Expiries travel as text written with 17 significant digits (or as binary floats), so a
float read back is the float written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, cast

from revsync.changes import Change
from revsync.stores import base
from revsync.stores.base import Snapshot, StoreError

__all__ = ["SnapshotParts", "seqs_of", "spans"]


def spans(head: int) -> Iterator[tuple[int, int]]:
    """``(after, upto)`` seq ranges that cover 1..``head``, ``base.SNAPSHOT_SPAN`` each."""
    span = base.SNAPSHOT_SPAN
    for after in range(0, head, span):
        yield after, min(after + span, head)


def _keys(value: object) -> list[str]:
    """Keys from a JSON array (text) or a driver's list; None for no rows."""
    if value is None:
        return []
    if isinstance(value, str | bytes):
        keys: list[str] = json.loads(value)
        return keys
    return list(cast("Iterable[str]", value))


def _numbers(value: object, number: type[float] | type[int]) -> list[Any]:
    """Numbers from comma-separated text or a driver's list; None or "" for none.

    Text is read as a JSON array: ``json.loads`` makes each number from a substring it
    drops at once, where ``split`` would hold a string per number until the end,
    scattering short-lived objects among the set's long-lived ones (measured: tens of
    MB of resident memory at a million rows).  Text JSON cannot read ("Inf") is split.
    """
    if not value:
        return []
    if isinstance(value, bytes):
        value = value.decode("ascii")
    if isinstance(value, str):
        try:
            numbers: list[Any] = json.loads(f"[{value}]")
        except ValueError:
            return list(map(number, value.split(",")))
        # float() of a float is that float: only a whole number written without a point
        # makes a new object.
        return list(map(float, numbers)) if number is float else numbers
    return list(cast("Iterable[Any]", value))


def seqs_of(value: object) -> list[int]:
    """Seqs from comma-separated text or a driver's list."""
    seqs: list[int] = _numbers(value, int)
    return seqs


class SnapshotParts:
    """The columns of a snapshot as its spans are read, then the Snapshot."""

    __slots__ = ("others", "registered", "revoked", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.revoked: tuple[list[str], list[float]] = ([], [])
        self.registered: tuple[list[str], list[float]] = ([], [])
        self.others: list[int] = []
        """Seqs of the other live rows, read as Changes at the end."""

    def add(self, revoked: tuple[object, object], registered: tuple[object, object]) -> None:
        """One span's aggregates: (keys, expiries) of revoked jtis and of registrations."""
        for into, (keys, expiries) in ((self.revoked, revoked), (self.registered, registered)):
            parsed_keys, parsed_expiries = _keys(keys), _numbers(expiries, float)
            if len(parsed_keys) != len(parsed_expiries):
                msg = (
                    f"store {self.url}: a snapshot span gave {len(parsed_keys)} keys and "
                    f"{len(parsed_expiries)} expiries"
                )
                raise StoreError(msg)
            into[0].extend(parsed_keys)
            into[1].extend(parsed_expiries)

    def snapshot(self, seq: int, others: list[Change], anchors: list[Change]) -> Snapshot:
        return Snapshot(seq, self.revoked, self.registered, others, anchors)
