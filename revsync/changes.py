"""The unit of revocation state: one row of the durable store, one event on the bus.

A change names a *target* (a token id, or an identity for "log out everywhere") and
the state the store holds for it after the change.  The store keeps one row per
target, stamped with the sequence number of the change that last wrote it, so
"every change since seq N" is simply "every row whose seq is greater than N", and
an unrevoke is a row whose ``revoked`` flag is false (a tombstone), kept until the
token it names would have expired anyway.
"""

from __future__ import annotations

import json
from contextlib import suppress
from enum import StrEnum
from typing import NamedTuple


class Kind(StrEnum):
    """What a change's ``key`` names."""

    JTI = "jti"
    """A single token, by its ``jti`` claim."""
    IDENTITY = "identity"
    """Every token of one identity issued at or before ``cutoff``."""
    ISSUED = "issued"
    """A token the app issued: its registration (the token registry,
    ``revsync.registry``).  ``revoked`` is always False here, and means neither a
    revocation nor an unrevoke: the row is what allowlist mode lets in.  Written only
    when REVSYNC_TRACK_TOKENS is on."""


class Change(NamedTuple):
    """The state of one target after the change numbered ``seq``.

    A NamedTuple rather than a dataclass: a start-up snapshot builds one per row,
    a million of them at a time, and tuples are the cheapest immutable record.
    """

    seq: int
    """Store-assigned, gap-free, strictly increasing sequence number."""
    kind: Kind
    key: str
    """The jti for ``Kind.JTI``; the canonical identity string for ``Kind.IDENTITY``."""
    revoked: bool
    """True for a revocation; False for an unrevoke (a tombstone), and always False
    for a registration (``Kind.ISSUED``)."""
    expires_at: float
    """Unix time after which the row can be dropped: the token's ``exp`` for a jti,
    the cut-off plus the longest token lifetime for an identity."""
    identity: str | None
    """The owning identity (canonical string) when known, for listing by identity."""
    cutoff: float | None
    """For ``Kind.IDENTITY``: tokens with ``iat`` at or before this unix time are revoked."""
    created_at: float
    """Unix time at which the change was written."""


class ChangeRequest(NamedTuple):
    """A change before the store has numbered it."""

    kind: Kind
    key: str
    revoked: bool
    expires_at: float
    identity: str | None = None
    cutoff: float | None = None


def canonical_identity(identity: object) -> str:
    """The string under which an identity's revocations are stored.

    Identities are whatever JSON the app put in the identity claim.  Strings are
    used as they are (the common case, and the cheap one on the request path);
    anything else is serialised canonically, so ``5`` and ``{"id": 5}`` each map
    to one stable key.  Numbers count by value, as Python compares them: ``1``,
    ``1.0`` and ``True`` are one identity (``users[1.0]`` is ``users[1]``), so a
    "log out everywhere" of one ends the tokens that carry another.
    """
    if type(identity) is str:
        return identity
    if type(identity) is int:
        return str(identity)  # its JSON form, without the detour
    # Too deep to walk: its JSON is longer than any key a revocation can hold, so it
    # is never stored, and serialised as it is.
    with suppress(_TooDeep):
        identity = _by_value(identity, _MAX_DEPTH)
    return _CANONICAL_JSON.encode(identity)


_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)
"""One encoder for every call: ``json.dumps`` with options builds a new one each time,
most of the cost of a small identity."""


_MAX_DEPTH = 300
"""Nesting beyond which an identity's JSON is longer than any stored key (2 characters
a level, 512 at most): it is serialised as it is, without a walk that deep."""


class _TooDeep(Exception):
    """An identity nested deeper than :data:`_MAX_DEPTH`."""


def _by_value(value: object, depth: int) -> object:
    """``value`` with every bool and whole float as the int it equals, ``depth``
    levels of lists and objects down (:class:`_TooDeep` beyond)."""
    if type(value) is bool:
        return int(value)
    if type(value) is float:
        return int(value) if value.is_integer() else value
    if isinstance(value, dict | list | tuple):
        if depth == 0:
            raise _TooDeep
        if isinstance(value, dict):
            return {key: _by_value(item, depth - 1) for key, item in value.items()}
        return [_by_value(item, depth - 1) for item in value]
    return value
