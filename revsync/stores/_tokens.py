"""The token registry's records, as every store keeps them (REVSYNC_TRACK_TOKENS).

A record is written together with a ``Kind.ISSUED`` change in one transaction, so
the record's seq comes from the same counter as every revocation and the nodes
learn of it through the snapshot, catch-up and bus like any other change.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from revsync.changes import ChangeRequest, Kind
from revsync.stores._common import check_request

__all__ = [
    "TokenRecord",
    "family_expiry",
    "records_from_rows",
    "registration_for",
    "registrations_for",
    "row_for",
]


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One issued token, as the registry keeps it."""

    jti: str
    identity: str
    """The canonical identity string (``revsync.changes.canonical_identity``)."""
    type: str
    """"access" or "refresh"."""
    family: str | None
    """The refresh-token family (REVSYNC_ROTATE_REFRESH); None for untracked families."""
    issued_at: float
    expires_at: float
    metadata: dict[str, str] = field(default_factory=dict)
    """Client metadata the app passed: user_agent, ip, device (strings, size-limited)."""
    rotated: bool = False
    """A refresh token already exchanged for a new one (presenting it again is reuse)."""
    seq: int = 0
    """The seq of the ``Kind.ISSUED`` change that registered it (0 before it is written)."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["metadata"] = dict(self.metadata)
        return shown


def registration_for(record: TokenRecord) -> ChangeRequest:
    """The ``Kind.ISSUED`` change that announces ``record`` to every node."""
    return ChangeRequest(Kind.ISSUED, record.jti, False, record.expires_at, record.identity)


def registrations_for(records: Iterable[TokenRecord]) -> list[ChangeRequest]:
    """The checked ``Kind.ISSUED`` changes of ``records``, in order (raises ValueError)."""
    return [check_request(registration_for(record)) for record in records]


def row_for(record: TokenRecord, seq: int) -> tuple[Any, ...]:
    """The SQL row of ``record``: jti ... rotated, then seq."""
    return (
        record.jti,
        record.identity,
        record.type,
        record.family,
        record.issued_at,
        record.expires_at,
        json.dumps(record.metadata, sort_keys=True),
        bool(record.rotated),
        seq,
    )


def family_expiry(records: Iterable[TokenRecord]) -> dict[str, float]:
    """The latest expiry of ``records`` per refresh family, sorted by family (so two
    transactions lock family rows in the same order)."""
    latest: dict[str, float] = {}
    for record in records:
        if record.family is not None:
            latest[record.family] = max(
                float(record.expires_at), latest.get(record.family, -math.inf)
            )
    return dict(sorted(latest.items()))


def records_from_rows(rows: Iterable[Any]) -> list[TokenRecord]:
    """Records from SQL rows selected as jti ... rotated, seq."""
    return [
        TokenRecord(
            r[0], r[1], r[2], r[3], float(r[4]), float(r[5]), json.loads(r[6]), bool(r[7]), r[8]
        )
        for r in rows
    ]
