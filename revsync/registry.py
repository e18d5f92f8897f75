"""The token registry: issued tokens in the store, allowlist mode, refresh rotation.

Off by default.  With ``REVSYNC_TRACK_TOKENS`` every token issued through
:meth:`Registry.issue_tokens` (``RevSync.registry.issue_tokens``) is recorded in the durable
store with its identity, type, times and client metadata, in one transaction with a
``Kind.ISSUED`` change numbered by the same counter as every revocation.  Nodes learn
of it through the snapshot, catch-up and bus (``Op.ISSUE``, a doorbell), so each
node's in-memory set also holds the allowlist.

- ``REVSYNC_MODE=allowlist``: a token whose jti is not registered is refused.  Each
  token carries ``rsq``, the seq of its registration: a node that has not applied
  that seq yet waits for it (at most ``REVSYNC_ALLOWLIST_WAIT`` seconds, in memory,
  while a background catch-up runs) instead of refusing, so the first request to
  another node right after login succeeds.  Known tokens take the sync fast path.
- ``REVSYNC_ROTATE_REFRESH``: refresh tokens carry a family id (``fam``); a refresh
  marks the presented jti rotated and registers its successors in one
  compare-and-set transaction.  Presenting a rotated token again revokes the whole
  family on every node and logs ``revsync.refresh_token_reused``.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any, Protocol, TypeVar, runtime_checkable

from revsync._logging import get_logger
from revsync.changes import Change, canonical_identity
from revsync.config import Settings, span_from
from revsync.events import check_announceable
from revsync.jwt.exceptions import RevocationStateUnavailable
from revsync.jwt.manager import JWTManager
from revsync.stores._tokens import TokenRecord, registration_for

__all__ = [
    "IssuedTokens",
    "RefreshTokenReused",
    "Registry",
    "RevocationEngine",
    "TokenRecord",
    "TokenStore",
    "UnknownToken",
    "check_metadata",
]

logger = get_logger()
T = TypeVar("T")

MAX_METADATA_BYTES = 1024
MAX_METADATA_KEYS = 8
MAX_METADATA_KEY_CHARS = 64
SEQ_CLAIM = "rsq"
FAMILY_CLAIM = "fam"

_PINNED: contextvars.ContextVar[dict[str, dict[str, Any]] | None] = contextvars.ContextVar(
    "revsync_pinned_claims", default=None
)


class RefreshTokenReused(Exception):
    """A rotated refresh token was presented again: its whole family is now revoked."""


class UnknownToken(LookupError):
    """No registry record for this jti."""


@runtime_checkable
class TokenStore(Protocol):
    """The store methods the registry needs (the SQLite, PostgreSQL and Redis stores
    have them)."""

    async def register(
        self, records: Sequence[TokenRecord], *, rotate: str | None = None
    ) -> list[Change] | None:
        """Write records and their ``Kind.ISSUED`` changes atomically; with ``rotate``,
        first compare-and-set that jti rotated, and write nothing (None) if it was
        unknown, already rotated or of a family marked by ``revoke_family``."""

    async def revoke_family(self, family: str) -> list[TokenRecord]:
        """Durably mark a refresh family revoked and return its records, read after the
        mark in the same transaction: a rotation in the family either committed before
        (its successor is returned) or fails afterwards (compare-and-set)."""

    async def token(self, jti: str) -> TokenRecord | None:
        """The record of one jti, or None."""

    async def tokens(
        self, *, identity: str | None = None, family: str | None = None
    ) -> list[TokenRecord]:
        """The records of one identity or one family, ascending by seq."""


class RevocationEngine(Protocol):
    """What the registry needs of the node's revocation engine (``RevSync`` is one):
    write changes, ask the in-memory set, know which store seq it has read."""

    settings: Settings

    @property
    def ready(self) -> bool:
        """Whether the node has synced and may answer tokens."""

    @property
    def store_seq(self) -> int:
        """The highest store seq this node has read from the store itself."""

    def check_token(self, claims: Mapping[str, Any]) -> bool:
        """The request path's answer for a token: revoked?  Raises
        RevocationStateUnavailable when the node cannot tell right now."""

    def unavailable(self) -> RevocationStateUnavailable | None:
        """Why the node cannot judge tokens right now, or None when it can."""

    def is_registered(self, jti: object) -> bool:
        """Whether this node's set holds ``jti`` as a registered (issued) token."""

    def request_catch_up(self) -> None:
        """Have the node read the store soon (the bus may have lost an event)."""

    async def write_changes(
        self, write: Callable[[], Awaitable[list[Change] | None]]
    ) -> list[Change] | None:
        """Run a store write that returns the changes it made, then apply them here
        and announce them; finished even if the caller is cancelled."""

    async def shielded(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` to completion even if the caller is cancelled."""

    async def revoke_many(
        self, tokens: Iterable[Mapping[str, Any] | tuple[str, float]]
    ) -> list[Change]:
        """Revoke many tokens in one store write (see RevSync.revoke_many)."""

    async def list_revocations(self, identity: object) -> list[Change]:
        """The store's live revocations of one identity."""


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """What :meth:`Registry.issue_tokens` returns."""

    access_token: str
    refresh_token: str | None
    access: TokenRecord
    refresh: TokenRecord | None


def check_metadata(metadata: object) -> dict[str, str]:
    """``metadata`` as a dict of short strings, or ValueError saying what is wrong."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        msg = f"token metadata must be an object of strings, got {type(metadata).__name__}"
        raise ValueError(msg)
    if len(metadata) > MAX_METADATA_KEYS:
        msg = f"token metadata has {len(metadata)} fields; at most {MAX_METADATA_KEYS} allowed"
        raise ValueError(msg)
    checked: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or len(key) > MAX_METADATA_KEY_CHARS:
            msg = f"token metadata keys must be strings of 1 to {MAX_METADATA_KEY_CHARS} characters"
            raise ValueError(msg)
        if not isinstance(value, str):
            msg = f"token metadata {key!r} must be a string, got {type(value).__name__}"
            raise ValueError(msg)
        checked[key] = value
    size = len(json.dumps(checked).encode())
    if size > MAX_METADATA_BYTES:
        msg = f"token metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} allowed"
        raise ValueError(msg)
    return checked


def _pin_claims(kind: str, payload: dict[str, Any]) -> None:
    """The JWTManager payload hook: pin the jti/exp chosen by ``issue_tokens``."""
    pinned = _PINNED.get()
    if pinned is not None and kind in pinned:
        payload.update(pinned[kind])


class Registry:
    """The token registry of one RevSync instance (see the module docstring)."""

    def __init__(self, engine: RevocationEngine, store: object, settings: Settings) -> None:
        if not isinstance(store, TokenStore):
            msg = (
                f"REVSYNC_TRACK_TOKENS needs a store that can keep token records "
                f"(register, revoke_family, token, tokens): REVSYNC_STORE_URL="
                f"{getattr(store, 'url', '?')} "
                f"names a store of type {type(store).__name__}, which cannot; use a "
                f"sqlite:///, postgresql:// or redis:// URL"
            )
            raise ValueError(msg)
        self._engine = engine
        self._store: TokenStore = store
        self.settings = settings

    # -- wiring --------------------------------------------------------------------------

    def attach(self, manager: JWTManager) -> None:
        """Pin claims of tokens issued through the registry; in allowlist mode, check them."""
        manager.add_payload_hook(_pin_claims)
        if self.settings.mode == "allowlist":
            manager.token_in_denylist_loader(self.is_refused)

    # -- issuing -------------------------------------------------------------------------

    async def issue_tokens(
        self,
        identity: Any,
        *,
        metadata: Mapping[str, str] | None = None,
        fresh: bool = False,
        refresh: bool = True,
        family: str | None = None,
        rotate: str | None = None,
    ) -> IssuedTokens:
        """Register then create an access token (and a refresh token, unless ``refresh``
        is False) for ``identity``.  Must run inside an app context (a request)."""

        from revsync.jwt.utils import create_access_token, create_refresh_token, jwt_context

        meta = check_metadata(metadata)
        cfg = jwt_context()[1]
        key = canonical_identity(identity)
        now = time.time()
        family = family or (str(uuid.uuid4()) if refresh else None)

        def record(kind: str) -> TokenRecord:
            lifetime = cfg.expires_for(kind)
            if lifetime is False:
                msg = f"REVSYNC_TRACK_TOKENS needs {kind} tokens that expire (JWT_*_EXPIRES)"
                raise ValueError(msg)
            expires = int(now) + int(span_from(lifetime, int(now)))
            return TokenRecord(str(uuid.uuid4()), key, kind, family, now, float(expires), meta)

        records = [record("access")] + ([record("refresh")] if refresh else [])
        origin = self.settings.node_id
        for r in records:  # before writing: nothing durable may fail to be announced
            check_announceable(Change(0, *registration_for(r), now), origin)
        changes = await self._engine.write_changes(
            lambda: self._store.register(records, rotate=rotate)
        )
        if changes is None:
            raise RefreshTokenReused(rotate)
        written = [dataclasses.replace(r, seq=c.seq) for r, c in zip(records, changes, strict=True)]
        pinned: dict[str, dict[str, Any]] = {}
        for r in written:
            claims: dict[str, Any] = {"jti": r.jti, "exp": int(r.expires_at), SEQ_CLAIM: r.seq}
            if r.type == "refresh" and self.settings.rotate_refresh:
                claims[FAMILY_CLAIM] = r.family
            pinned[r.type] = claims
        token = _PINNED.set(pinned)
        try:
            access = await _settle(create_access_token(identity=identity, fresh=fresh))
            refresh_token = (
                await _settle(create_refresh_token(identity=identity)) if refresh else None
            )
        finally:
            _PINNED.reset(token)
        logger.info(
            "revsync.tokens_issued",
            jtis=[r.jti for r in written],
            family=family,
            **logger.identity(key, always=self.settings.log_identities),
        )
        return IssuedTokens(access, refresh_token, written[0], written[1] if refresh else None)

    async def refresh(
        self, claims: Mapping[str, Any], *, metadata: Mapping[str, str] | None = None
    ) -> IssuedTokens:
        """New tokens for the verified refresh token ``claims``.

        Without rotation: a new access token only.  With rotation: a new access and
        refresh token of the same family, and the presented one is retired; if it was
        already retired, every token of its family is revoked and RefreshTokenReused
        raised.
        """
        identity = claims.get(self.settings.identity_claim)
        if not self.settings.rotate_refresh:
            return await self.issue_tokens(identity, metadata=metadata, refresh=False)
        jti = claims.get("jti")
        family = claims.get(FAMILY_CLAIM)
        if not isinstance(jti, str) or not isinstance(family, str):
            msg = "this refresh token has no registered family; log in again"
            raise UnknownToken(msg)
        if metadata is None:
            current = await self._store.token(jti)
            metadata = current.metadata if current is not None else None
        try:
            return await self.issue_tokens(identity, metadata=metadata, family=family, rotate=jti)
        except RefreshTokenReused:
            current = await self._store.token(jti)
            if current is None:
                msg = f"refresh token {jti} is not registered; log in again"
                raise UnknownToken(msg) from None
            await self.revoke_family(family, reused_jti=jti)
            raise

    async def revoke_family(self, family: str, *, reused_jti: str | None = None) -> list[Change]:
        """Revoke every token of a refresh family on every node.

        The store marks the family first, so no rotation registers a successor behind
        this; if revoking the members then fails, the next refresh in the family fails
        on the mark and comes back here.
        """
        # One unit of work, finished even if the caller goes away: the mark without the
        # revocations would leave the family's live tokens accepted everywhere.
        members, changes = await self._engine.shielded(self._revoke_members(family))
        logger.warning(
            "revsync.refresh_token_reused" if reused_jti else "revsync.family_revoked",
            family=family,
            jti=reused_jti,
            **logger.identity(
                members[0].identity if members else None, always=self.settings.log_identities
            ),
            revoked=len(changes),
        )
        return changes

    async def _revoke_members(self, family: str) -> tuple[list[TokenRecord], list[Change]]:
        members = await self._store.revoke_family(family)
        live = [(r.jti, r.expires_at) for r in members if r.expires_at > time.time()]
        return members, await self._engine.revoke_many(live)

    # -- reading -------------------------------------------------------------------------

    async def token(self, jti: str) -> TokenRecord | None:
        """The registry record of one jti, or None."""
        return await self._store.token(jti)

    async def active_tokens(self, identity: object) -> list[TokenRecord]:
        """The identity's live, non-revoked tokens, oldest first, with their metadata."""
        now = time.time()
        key = canonical_identity(identity)
        records = await self._store.tokens(identity=key)
        revocations = await self._engine.list_revocations(key)
        revoked = {c.key for c in revocations if c.kind == "jti"}
        cutoff = max((c.cutoff for c in revocations if c.cutoff is not None), default=None)
        return [
            r
            for r in records
            if r.expires_at > now
            and r.jti not in revoked
            and not r.rotated
            and (cutoff is None or r.issued_at > cutoff)
        ]

    # -- the request path (allowlist mode) ---------------------------------------------

    def is_refused(self, claims: Mapping[str, Any]) -> bool | Awaitable[bool]:
        """The denylist loader in allowlist mode.

        Sync and in memory for a registered token.  For an unknown jti whose ``rsq``
        this node has not applied yet, an awaitable that waits (bounded) for it.
        Raises RevocationStateUnavailable (503, not 401) when the node cannot tell:
        not ready yet, or stale in fail-closed mode.
        """
        engine = self._engine
        if engine.is_registered(claims.get("jti")):
            return engine.check_token(claims)
        seq = claims.get(SEQ_CLAIM)
        # store_seq, not bus_seq: only a store read proves that seq has been read past
        # (forged bus messages can move bus_seq ahead).
        if type(seq) is not int or seq <= engine.store_seq:
            return True  # never registered, or read past and gone: refused for good
        error = engine.unavailable()
        if error is not None:
            raise error  # it may be registered where this node cannot see yet
        return self._wait_for(claims, seq)

    async def _wait_for(self, claims: Mapping[str, Any], seq: int) -> bool:
        engine = self._engine
        deadline = time.monotonic() + self.settings.allowlist_wait
        jti = claims.get("jti")
        polls = 0
        while time.monotonic() < deadline:
            if engine.is_registered(jti):
                return engine.check_token(claims)
            if seq <= engine.store_seq:
                return True
            polls += 1
            if polls == 10:
                # The bus is late or lost the event: have the node read the store (one
                # catch-up at a time, versioned like every other, stopped with it).
                engine.request_catch_up()
            await asyncio.sleep(0.005)
        error = engine.unavailable()
        if error is not None:
            raise error
        logger.warning("revsync.allowlist_wait_timeout", jti=jti, rsq=seq)
        return True


async def _settle(value: str | Awaitable[str]) -> str:
    if isawaitable(value):
        return await value
    return value
