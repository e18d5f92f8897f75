"""The wire format of the bus: one versioned JSON message per change, plus pings.

A message is a UTF-8 JSON object of at most ``MAX_EVENT_BYTES`` bytes with exactly
these members (``sig`` only when the sender has a signing key)::

    {"v":1,"op":"revoke","seq":42,"key":"3f0c9a4e-...","exp":1700000900,
     "id":"alice","cutoff":null,"origin":"api-1","ts":1700000000.125,
     "sig":"5d41402abc4b2a76b9719d911017c592..."}

- ``v``: ``SCHEMA_VERSION`` (the integer 1).
- ``op``: one of :class:`Op`; ``revoked`` is implied by it.
- ``seq``: the store's sequence number of the change, ``1 <= seq < 2**63``; ``0``
  for (and only for) ``ping``.
- ``key``: the jti, the canonical identity for identity ops, a nonce for ``ping``.
- ``exp``: unix time after which the row may be dropped (``ts`` for ``ping``).
- ``id``: the owning identity or ``null``.
- ``cutoff``: unix time, required for ``revoke_identity``, optional for
  ``unrevoke_identity``, ``null`` otherwise.
- ``origin``: the id of the node that sent it.  ``ts``: unix time it was sent.
- ``sig``: lowercase hex HMAC-SHA256, keyed with the shared event key, of the
  *canonical form* of every other member: the object serialised with sorted keys,
  ``,`` and ``:`` separators, no whitespace, non-ASCII characters as UTF-8 (not
  escaped).  Times that are whole numbers are sent as integers, so the canonical
  form is what ``JSON.stringify`` of the sorted object gives in other languages.

Times are finite numbers in ``[0, MAX_TIME]``.  Strings are non-empty (``id`` aside),
valid Unicode, at most ``MAX_KEY_CHARS`` (``MAX_ORIGIN_CHARS`` for ``origin``).

:func:`decode_event` checks all of it and raises :class:`InvalidEvent` with one of
``REJECT_REASONS`` for anything else, and nothing else for any input.  It does not
detect replays: the same bytes decode to the same event, and consumers drop what
they have already applied by ``seq``.  An unrevoke event is a doorbell, not a
command: consumers re-read that target from the store (docs/design.md, guarantee 7).
See docs/events.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from revsync.changes import Change, ChangeRequest, Kind

SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 2048
MAX_KEY_CHARS = 512
MAX_ORIGIN_CHARS = 128
MAX_SEQ = 2**63 - 1
MAX_TIME = 1e15
"""Largest accepted time (year ~31 million): every whole time is exact as a double."""

REJECT_REASONS = (
    "too_large",  # more than MAX_EVENT_BYTES bytes
    "not_json",  # not bytes/str, not UTF-8, or not JSON
    "bad_schema",  # not an object, duplicate / missing / unknown members
    "bad_version",  # "v" is not SCHEMA_VERSION
    "bad_field",  # a member has the wrong type, range or length
    "unsigned",  # a key is configured and the message has no "sig"
    "bad_signature",  # "sig" does not match
)

_FIELDS = frozenset(("v", "op", "seq", "key", "exp", "id", "cutoff", "origin", "ts"))
_SIGNED_FIELDS = _FIELDS | {"sig"}


class InvalidEvent(ValueError):
    """A message (or event) that does not follow the format.

    ``reason`` is one of ``REJECT_REASONS`` (for metrics); ``detail`` says what.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Op(StrEnum):
    """What an event announces."""

    REVOKE = "revoke"
    UNREVOKE = "unrevoke"
    REVOKE_IDENTITY = "revoke_identity"
    UNREVOKE_IDENTITY = "unrevoke_identity"
    PING = "ping"
    ISSUE = "issue"
    """A token was registered (REVSYNC_TRACK_TOKENS): a doorbell, like unrevoke."""


_OPS = {op.value: op for op in Op}
_OP_OF = {
    (Kind.JTI, True): Op.REVOKE,
    (Kind.JTI, False): Op.UNREVOKE,
    (Kind.IDENTITY, True): Op.REVOKE_IDENTITY,
    (Kind.IDENTITY, False): Op.UNREVOKE_IDENTITY,
    (Kind.ISSUED, False): Op.ISSUE,
}
_KIND_OF = {
    Op.REVOKE: Kind.JTI,
    Op.UNREVOKE: Kind.JTI,
    Op.REVOKE_IDENTITY: Kind.IDENTITY,
    Op.UNREVOKE_IDENTITY: Kind.IDENTITY,
    Op.ISSUE: Kind.ISSUED,
}


def _bad(detail: str) -> InvalidEvent:
    return InvalidEvent("bad_field", detail)


def _check_str(name: str, value: object, limit: int, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if type(value) is not str:
        raise _bad(f"{name} must be a string")
    if not value and not optional:
        raise _bad(f"{name} must not be empty")
    if len(value) > limit:
        raise _bad(f"{name} is longer than {limit} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad(f"{name} is not valid Unicode") from None


def _check_time(name: str, value: object) -> float:
    if type(value) is int:
        try:
            value = float(value)
        except OverflowError:
            raise _bad(f"{name} is out of range") from None
    if type(value) is not float:
        raise _bad(f"{name} must be a number")
    if not (math.isfinite(value) and 0.0 <= value <= MAX_TIME):
        raise _bad(f"{name} must be a finite number in [0, {MAX_TIME:.0f}]")
    return value


def _describe(value: object) -> str:
    """A short, safe description of an untrusted value (no deep repr)."""
    if value is None or type(value) in (bool, int, float):
        return repr(value)[:40]
    if type(value) is str:
        return repr(value[:40])
    return type(value).__name__


@dataclass(frozen=True, slots=True)
class RevocationEvent:
    """One message on the bus.  Construction validates every field.

    Raises :class:`InvalidEvent` (reason ``bad_field``) for a field outside the
    format; ints given for times are stored as floats.
    """

    op: Op
    seq: int
    key: str
    """The jti, the canonical identity (identity ops) or a nonce (ping)."""
    expires_at: float
    identity: str | None
    cutoff: float | None
    origin: str
    """The id of the node that sent the event."""
    sent_at: float

    def __post_init__(self) -> None:
        op = _OPS.get(self.op) if type(self.op) is str else self.op
        if type(op) is not Op:
            raise _bad(f"op must be one of {', '.join(_OPS)}")
        object.__setattr__(self, "op", op)
        seq = self.seq
        if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
            raise _bad(f"seq must be an integer in [0, {MAX_SEQ}]")
        if (seq == 0) != (op is Op.PING):
            raise _bad("seq must be 0 for ping and only for ping")
        _check_str("key", self.key, MAX_KEY_CHARS)
        _check_str("id", self.identity, MAX_KEY_CHARS, optional=True)
        _check_str("origin", self.origin, MAX_ORIGIN_CHARS)
        object.__setattr__(self, "expires_at", _check_time("exp", self.expires_at))
        object.__setattr__(self, "sent_at", _check_time("ts", self.sent_at))
        cutoff = None if self.cutoff is None else _check_time("cutoff", self.cutoff)
        if cutoff is None and op is Op.REVOKE_IDENTITY:
            raise _bad("cutoff is required for revoke_identity")
        if cutoff is not None and op not in (Op.REVOKE_IDENTITY, Op.UNREVOKE_IDENTITY):
            raise _bad(f"cutoff must be null for {op}")
        object.__setattr__(self, "cutoff", cutoff)

    @classmethod
    def from_change(cls, change: Change, origin: str, sent_at: float) -> RevocationEvent:
        """The event announcing a stored change."""
        op = _OP_OF.get((Kind(change.kind), bool(change.revoked)))
        if op is None:  # a token row is never revoked: revocations are Kind.JTI rows
            msg = f"no event for a change of kind {change.kind!r}"
            raise ValueError(msg)
        return cls(
            op=op,
            seq=change.seq,
            key=change.key,
            expires_at=change.expires_at,
            identity=change.identity,
            cutoff=change.cutoff,
            origin=origin,
            sent_at=sent_at,
        )

    @classmethod
    def ping(cls, origin: str, nonce: str, sent_at: float) -> RevocationEvent:
        """A heartbeat: the sender expects it back with the same ``nonce``."""
        return cls(
            op=Op.PING,
            seq=0,
            key=nonce,
            expires_at=sent_at,
            identity=None,
            cutoff=None,
            origin=origin,
            sent_at=sent_at,
        )

    @property
    def revoked(self) -> bool:
        """True for revoke and revoke_identity."""
        return self.op is Op.REVOKE or self.op is Op.REVOKE_IDENTITY

    @property
    def kind(self) -> Kind:
        """What ``key`` names.  Raises ValueError for a ping."""
        kind = _KIND_OF.get(self.op)
        if kind is None:
            msg = "a ping names no revocation target"
            raise ValueError(msg)
        return kind

    def to_change(self, created_at: float | None = None) -> Change:
        """The change this event announces (``created_at`` defaults to ``sent_at``).

        Raises ValueError for a ping.
        """
        return Change(
            seq=self.seq,
            kind=self.kind,
            key=self.key,
            revoked=self.revoked,
            expires_at=self.expires_at,
            identity=self.identity,
            cutoff=self.cutoff,
            created_at=self.sent_at if created_at is None else created_at,
        )


def _wire_time(value: float | None) -> float | int | None:
    """Whole times go out as integers, so every JSON library writes them alike."""
    if value is not None and value.is_integer():
        return int(value)
    return value


def _canonical(fields: dict[str, Any]) -> bytes:
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def _sign(key: bytes, fields: dict[str, Any]) -> str:
    return hmac.new(key, _canonical(fields), hashlib.sha256).hexdigest()


def encode_event(event: RevocationEvent, key: bytes | None) -> bytes:
    """The message for ``event``, signed when ``key`` is given.

    Raises :class:`InvalidEvent` (``too_large``) if it would exceed
    ``MAX_EVENT_BYTES`` (possible only with long non-ASCII or control-character
    strings), and ValueError for an empty key.
    """
    fields: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "op": event.op.value,
        "seq": event.seq,
        "key": event.key,
        "exp": _wire_time(event.expires_at),
        "id": event.identity,
        "cutoff": _wire_time(event.cutoff),
        "origin": event.origin,
        "ts": _wire_time(event.sent_at),
    }
    if key is not None:
        if not key:
            msg = "the event signing key must not be empty"
            raise ValueError(msg)
        fields["sig"] = _sign(key, fields)
    data = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(data) > MAX_EVENT_BYTES:
        msg = f"{len(data)} bytes, more than {MAX_EVENT_BYTES}"
        raise InvalidEvent("too_large", msg)
    return data


ANNOUNCE_MARGIN = 64
"""Bytes kept free when checking a change before it is written: the stored row may
carry a longer expiry or cut-off than the request (the later one wins)."""


_FIXED_BYTES = 400
"""More than every part of a message but its strings: names, seq, three times, sig."""


def _plainly_announceable(change: Change | ChangeRequest, origin: str) -> bool:
    """The common case (a token revoked, perhaps one of a batch of 100,000), told
    without building the message: a jti change, short printable ASCII strings (JSON
    escapes at most double them).  Its times are the caller's to check."""
    key, identity = change.key, change.identity or ""
    return bool(
        change.kind == Kind.JTI
        and change.cutoff is None
        and key
        and len(key) <= MAX_KEY_CHARS
        and len(identity) <= MAX_KEY_CHARS
        and key.isascii()
        and key.isprintable()
        and identity.isascii()
        and identity.isprintable()
        and 2 * (len(key) + len(identity) + len(origin)) + _FIXED_BYTES
        <= MAX_EVENT_BYTES - ANNOUNCE_MARGIN
    )


def check_announceable_many(requests: Iterable[ChangeRequest], origin: str, now: float) -> None:
    """``check_announceable`` of each request as the change it makes at ``now`` (seq 0):
    the common case per request without building the change."""
    now_in_range = 0.0 <= now <= MAX_TIME
    for request in requests:
        if not (
            now_in_range
            and _plainly_announceable(request, origin)
            and 0.0 <= request.expires_at <= MAX_TIME
        ):
            check_announceable(Change(0, *request, now), origin)


def check_announceable(change: Change, origin: str) -> None:
    """Raise ValueError if the event announcing ``change`` could not be sent.

    Called *before* a change is written, so that nothing durable can fail to be
    announced afterwards: every field must be within the format's limits and the
    message within ``MAX_EVENT_BYTES`` with ``ANNOUNCE_MARGIN`` to spare.
    ``change.seq`` may be 0 (not yet numbered).  Raises :class:`InvalidEvent`.
    """
    key, identity = change.key, change.identity or ""
    times = (change.expires_at, change.created_at, change.cutoff or 0.0)
    if _plainly_announceable(change, origin) and all(0.0 <= t <= MAX_TIME for t in times):
        return
    if "\x00" in key or "\x00" in identity:
        # The format carries it, but PostgreSQL's text cannot: the write would fail on
        # one store and not another, every time (docs/design.md, "Long-lived tokens").
        what = "key" if "\x00" in key else "identity"
        msg = (
            f"the {change.kind} change's {what} contains a NUL character, which a store cannot hold"
        )
        raise InvalidEvent("bad_field", msg)
    try:
        event = RevocationEvent.from_change(change._replace(seq=MAX_SEQ), origin, change.created_at)
    except InvalidEvent as exc:
        what = "identity" if exc.detail.startswith("id ") else "change"
        msg = (
            f"the event announcing this {change.kind} change cannot carry its {what}: {exc.detail}"
        )
        raise InvalidEvent(exc.reason, msg) from None
    try:
        size = len(encode_event(event, b"any key: a signature is as long")) + ANNOUNCE_MARGIN
    except InvalidEvent:
        size = MAX_EVENT_BYTES + 1
    if size > MAX_EVENT_BYTES:
        msg = (
            f"the {change.kind} change of {key[:40]!r} would need an event of more than "
            f"{MAX_EVENT_BYTES - ANNOUNCE_MARGIN} bytes (shorten the key or the identity)"
        )
        raise InvalidEvent("too_large", msg)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        msg = "duplicate member"
        raise InvalidEvent("bad_schema", msg)
    return obj


# Made once: ``json.loads(..., object_pairs_hook=...)`` builds a decoder (and its
# scanner) on every call, a third of the cost of decoding a message.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def decode_event(data: bytes | str, key: bytes | None) -> RevocationEvent:
    """Parse and validate one message; raise :class:`InvalidEvent` for anything else.

    Checks, in order: size, UTF-8 and JSON, an object with no duplicate members,
    ``v``, exactly the known members, the signature when ``key`` is given (a ``sig``
    without a configured key is ignored), then every field.  Raises ValueError only
    for an empty ``key`` (a configuration error, not an input).
    """
    if key is not None and not key:
        msg = "the event signing key must not be empty"
        raise ValueError(msg)
    if isinstance(data, str):
        if len(data) > MAX_EVENT_BYTES:
            raise InvalidEvent("too_large", f"more than {MAX_EVENT_BYTES} bytes")
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidEvent("not_json", "not valid Unicode") from None
    elif not isinstance(data, bytes):
        raise InvalidEvent("not_json", f"expected bytes or str, got {type(data).__name__}")
    if len(data) > MAX_EVENT_BYTES:
        raise InvalidEvent("too_large", f"{len(data)} bytes, more than {MAX_EVENT_BYTES}")
    try:
        obj = _DECODER.decode(data.decode("utf-8"))
    except InvalidEvent:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidEvent("not_json", str(exc)[:200]) from None

    if type(obj) is not dict:
        raise InvalidEvent("bad_schema", f"expected an object, got {type(obj).__name__}")
    if "v" not in obj:
        raise InvalidEvent("bad_schema", "no version member 'v'")
    version = obj["v"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise InvalidEvent("bad_version", f"version {_describe(version)} is not supported")
    names = obj.keys()
    if not (_FIELDS <= names <= _SIGNED_FIELDS):
        missing = sorted(_FIELDS - names)
        unknown = sorted(names - _SIGNED_FIELDS)
        detail = f"missing {missing}, unknown {[n[:40] for n in unknown[:5]]}"
        raise InvalidEvent("bad_schema", detail)
    signed = "sig" in obj
    sig = obj.pop("sig", "")
    if type(sig) is not str:
        raise _bad("sig must be a string")
    if key is not None:
        if not signed:
            raise InvalidEvent("unsigned", "the message has no sig and a key is configured")
        try:
            expected = _sign(key, obj)
        except RecursionError:
            raise InvalidEvent("bad_signature", "cannot canonicalise the message") from None
        if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "surrogatepass")):
            raise InvalidEvent("bad_signature", "sig does not match")

    op = obj["op"]
    if type(op) is not str or op not in _OPS:
        raise _bad(f"op must be one of {', '.join(_OPS)}")
    return RevocationEvent(
        op=_OPS[op],
        seq=obj["seq"],
        key=obj["key"],
        expires_at=obj["exp"],
        identity=obj["id"],
        cutoff=obj["cutoff"],
        origin=obj["origin"],
        sent_at=obj["ts"],
    )
