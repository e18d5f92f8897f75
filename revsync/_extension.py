"""RevSync: the Quart extension that keeps every node's revocations in sync."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from revsync._bus import SINGLE_PROCESS_HINT, bus_from_url
from revsync._logging import get_logger
from revsync._memory_bus import MemoryBus
from revsync._replica import Replica, WriteMark
from revsync._revocation_set import RevocationSet
from revsync._shielded import ShieldedWork
from revsync._stats import SyncStats
from revsync._subscriber import Subscriber
from revsync.changes import Change, ChangeRequest, Kind, canonical_identity
from revsync.cli import quart_commands
from revsync.config import KEYWORDS, NEVER_EXPIRES_TTL, SettingError, Settings, resolve
from revsync.events import (
    ANNOUNCE_MARGIN,
    MAX_EVENT_BYTES,
    MAX_KEY_CHARS,
    MAX_SEQ,
    InvalidEvent,
    RevocationEvent,
    check_announceable,
    check_announceable_many,
    encode_event,
)
from revsync.jwt.config import JWTConfig, check_each_config
from revsync.jwt.exceptions import JWTDecodeError, RevocationStateUnavailable
from revsync.jwt.manager import INVALID_JTI, MAX_EXP, MAX_JTI_CHARS, JWTManager, on_manager
from revsync.registry import Registry
from revsync.stores import store_from_url
from revsync.stores.base import PAGE_SIZE, PartialWriteError, Store, StoreError

if TYPE_CHECKING:
    from quart import Quart

logger = get_logger()
T = TypeVar("T")

_LONGEST_TIME = 4.9406564584124654e-324
"""A time whose JSON form is as long as any (23 characters): sizes events at worst."""

UNRECORDABLE = (
    "Token cannot be revoked, so its revocation cannot be checked: its identity claim "
    "is too long, or not valid text, for a revocation to record"
)
"""The 422 message for a token whose identity no revocation or cut-off can name."""

NULL_IDENTITY = (
    "Token has a null identity claim, so its revocation cannot be checked: no "
    '"log out everywhere" can name it'
)
"""The 422 message for a token whose identity claim is ``null``."""

# revoke_many publishes each change up to this size; beyond it, only the last one as
# each ANNOUNCE_EVERY changes become durable, and at the end (docs/design.md, "Mass
# revocations"): its sequence gap makes every node read them from the store in pages.
PUBLISH_EACH_LIMIT = 100
ANNOUNCE_EVERY = PAGE_SIZE


class RevSync:
    """JWT revocation shared by every node of a Quart app.

    ``RevSync(app)`` or ``RevSync()`` then ``init_app(app)``.  Settings come from
    keyword arguments, else ``REVSYNC_*`` keys of ``app.config``, else the defaults
    declared in ``revsync.config.Settings``.  It becomes the denylist loader of the
    app's ``revsync.jwt.JWTManager`` (whichever of the two is created first).
    """

    def __init__(self, app: Quart | None = None, *, store: Store | None = None, **settings: Any):
        """``settings``: any keyword of ``revsync.config.KEYWORDS`` (a ``REVSYNC_*`` key
        in lower case without its prefix: ``max_staleness=5``); None means not given.
        ``store``: a Store instance to use instead of ``REVSYNC_STORE_URL``."""
        unknown = set(settings) - set(KEYWORDS)
        if unknown:
            msg = (
                f"RevSync() got an unexpected keyword argument {sorted(unknown)[0]!r}; "
                f"its settings are: {', '.join(KEYWORDS)}"
            )
            raise TypeError(msg)
        self._overrides = settings
        self._registry: Registry | None = None
        self._given_store = store
        self.stats = SyncStats()
        self._writes = ShieldedWork("revsync write")
        self._started = False
        self._ever_started = False
        self._startup_watch: asyncio.Task[None] | None = None
        self._ready = False
        self._confirmed_at = -math.inf
        if app is not None:
            self.init_app(app)

    # -- set-up --------------------------------------------------------------------

    def init_app(self, app: Quart) -> None:
        """Read and validate settings, build the parts, and hook the app's lifecycle.

        Raises SettingError (a ValueError) naming the config key of any invalid setting.
        """
        self.settings: Settings = resolve(app.config, self._overrides)
        self.store: Store = self._given_store or store_from_url(self.settings.store_url)
        self.bus = bus_from_url(self.settings.redis_url, self.settings.channel)
        self.revocations = RevocationSet(leeway=self.settings.leeway)
        checkpoint = self.settings.checkpoint_path
        self.replica = Replica(
            self.store,
            self.revocations,
            self.stats,
            checkpoint=None if checkpoint is None else Path(checkpoint),
        )
        self.subscriber = Subscriber(self.settings, self.bus, self.replica, self.stats)
        self._identity_claim = self.settings.identity_claim
        self._cutoff_ttl = self.settings.cutoff_ttl
        self._string_bytes = _string_budget(self.settings.node_id)
        self._max_staleness = self.settings.max_staleness
        self._fail_closed = self.settings.fail_mode == "closed"
        if self.settings.track_tokens:
            self._registry = Registry(self, self.store, self.settings)

        app.extensions["revsync"] = self
        on_manager(app, self.attach)
        check_each_config(app, self._check_jwt_config)
        if not (app.config.get("JWT_BLACKLIST_ENABLED") or app.config.get("JWT_BLOCKLIST_ENABLED")):
            logger.warning(
                "revsync.denylist_disabled",
                hint="set JWT_BLACKLIST_ENABLED = True, or no token is checked against revocations",
            )
        if self.start not in app.before_serving_funcs:  # once, however often set up
            app.before_serving(self.start)
            app.after_serving(self.stop)
            app.cli.add_command(quart_commands())  # quart revsync check|migrate|prune|status

    def _reconfigure(self, app: Quart, **settings: Any) -> None:
        """Set up again with these keywords over the given ones, before start() only
        (``revsync.testing`` moves an app's RevSync onto an in-process bus this way)."""
        if self._started:
            msg = "this RevSync is already running; stop it before re-configuring it"
            raise RuntimeError(msg)
        self._overrides = {**self._overrides, **settings}
        self.init_app(app)

    def attach(self, manager: JWTManager) -> None:
        """Become ``manager``'s denylist loader (called once the app has both).

        Also refuses to create a token that would outlive the "log out everywhere"
        cut-offs (see :meth:`_check_lifetime`).
        """
        manager.token_in_denylist_loader(self.check_token)
        if self._registry is not None:
            self._registry.attach(manager)  # allowlist mode replaces the loader
        manager.add_payload_hook(self._check_lifetime)  # last: sees pinned claims
        manager.add_payload_hook(self._check_recordable)

    def _check_jwt_config(self, cfg: JWTConfig) -> None:
        """Refuse JWT settings changed since set-up in a way that would let a revoked
        token in: the identity claim that cut-offs match, and a decode leeway longer
        than revocations are kept (guarantee 8).  Runs whenever the JWT layer reads
        changed settings (revsync.jwt.config.check_each_config), not per request."""
        if cfg.identity_claim != self._identity_claim:
            msg = (
                f"JWT_IDENTITY_CLAIM is {cfg.identity_claim!r}, but RevSync was set up when "
                f"it was {self._identity_claim!r}, the claim its 'log out everywhere' "
                "cut-offs match: set the JWT_* keys before RevSync(app) or init_app(app)"
            )
            raise SettingError(msg)
        if cfg.leeway > self.settings.leeway:
            msg = (
                f"JWT_DECODE_LEEWAY ({cfg.leeway:g}s) is above REVSYNC_LEEWAY "
                f"({self.settings.leeway:g}s), which RevSync read when it was set up: "
                "revocations would be dropped while their tokens are still accepted; set "
                "the JWT_* keys before RevSync(app) or init_app(app), or raise REVSYNC_LEEWAY"
            )
            raise SettingError(msg)

    @property
    def registry(self) -> Registry:
        """The token registry (``issue_tokens``, ``refresh``, ``active_tokens``...).

        RuntimeError when it is off (REVSYNC_TRACK_TOKENS).
        """
        if self._registry is None:
            msg = "the token registry is off: set REVSYNC_TRACK_TOKENS=true"
            raise RuntimeError(msg)
        return self._registry

    def _check_lifetime(self, kind: str, payload: dict[str, Any]) -> None:
        """A JWTManager payload hook: no token may outlive the cut-offs that apply to it.

        A cut-off is kept REVSYNC_CUTOFF_TTL seconds, and :meth:`is_revoked` refuses
        every token older than that (a cut-off that applied to it may be gone), so a
        longer-lived token would stop working half-way through its life.  Refusing to
        create it says so at once, naming the setting.
        """
        exp, iat = payload.get("exp"), payload.get("iat")
        if not isinstance(iat, int | float):
            return
        ttl = self._cutoff_ttl
        if exp is None:
            if ttl >= NEVER_EXPIRES_TTL:
                return  # tokens that never expire: cut-offs are kept ten years
            lifetime = "never expires"
        elif not isinstance(exp, int | float) or exp - iat <= ttl:
            return
        else:
            lifetime = f"lives {exp - iat:g}s"
        msg = (
            f"this {kind} token {lifetime}, longer than 'log out everywhere' cut-offs are "
            f"kept (REVSYNC_CUTOFF_TTL={ttl:g}s); revsync refuses tokens older than "
            f"that, so raise REVSYNC_CUTOFF_TTL to the longest lifetime you issue"
        )
        raise ValueError(msg)

    def _check_recordable(self, kind: str, payload: dict[str, Any]) -> None:
        """A JWTManager payload hook: refuse to create a token no revocation could
        record (its identity too long for a "log out everywhere" cut-off, say), which
        :meth:`check_token` would refuse anyway."""
        problem = self._unrecordable(payload)
        if problem is not None:
            msg = f"this {kind} token could never be revoked: {problem[1]}"
            raise ValueError(msg)

    def _unrecordable(self, claims: Mapping[str, Any]) -> tuple[str, str] | None:
        """Why revoking this token (by jti, or its identity's cut-off) could not be
        written, or None: the answer for its client, and ``events.check_announceable``'s
        words.

        The usual token, whose jti and identity are printable text of a few hundred
        characters at most, is answered at once; others build the two events to see.
        """
        jti, identity = claims.get("jti"), claims.get(self._identity_claim)
        if type(jti) is not str:
            return None  # the JWT layer refused what a jti revocation needs
        if identity is None:
            # revoke_identity(None) is refused: this token's user could never be
            # logged out everywhere (its view sees get_jwt_identity() is None).
            return NULL_IDENTITY, "its identity is null, which no cut-off can name"
        # canonical_identity, with its common cases inline (an int is its own digits).
        if type(identity) is str:
            key = identity
        elif type(identity) is int:
            key = str(identity)
        else:
            key = canonical_identity(identity)
        size = len(key)
        if 0 < size <= MAX_KEY_CHARS and jti.isprintable() and key.isprintable():
            # Printable text takes at most 4 bytes a character in an event, 2 for
            # ASCII (JSON escapes only quotes and backslashes): then it surely fits.
            per_char = 2 if jti.isascii() and key.isascii() else 4
            if per_char * max(len(jti) + size, 2 * size) <= self._string_bytes:
                return None
        now = time.time()
        exp = claims.get("exp")
        expires = float(exp) if isinstance(exp, int | float) and 0 <= exp <= MAX_EXP else now
        changes = (
            Change(0, Kind.JTI, jti, True, expires, key, None, now),
            Change(0, Kind.IDENTITY, key, True, now + self._cutoff_ttl, key, now, now),
        )
        try:
            for change in changes:
                check_announceable(change, self.settings.node_id)
        except InvalidEvent as exc:
            # The JWT layer refused every other jti no store could hold.
            return (INVALID_JTI if "\x00" in jti else UNRECORDABLE), exc.detail
        return None

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, take the snapshot, then become ready (docs/design.md, guarantee 4).

        With REVSYNC_WAIT_FOR_READY (the default) this waits for the snapshot and
        raises RuntimeError if it takes longer than REVSYNC_STARTUP_TIMEOUT, so the
        server fails to start instead of serving unsynced.  Otherwise it returns at
        once and the node refuses every token and reports not ready until synced.
        """
        if self._started:
            return
        self._started = True
        if isinstance(self.bus, MemoryBus):
            self._log_in_process_bus()
        self._ever_started = True
        self.subscriber.start(self._on_confirmed)
        timeout = self.settings.startup_timeout
        if not self.settings.wait_for_ready:
            self._startup_watch = asyncio.create_task(self._watch_startup(timeout))
            return
        try:
            async with asyncio.timeout(timeout):
                # The snapshot, and the node's own heartbeat back over the bus: only
                # then can it vouch for being in sync and accept a token.
                await self.subscriber.synced.wait()
        except TimeoutError:
            reason = self.subscriber.last_error or (
                "no heartbeat came back over the bus"
                if self.subscriber.ready.is_set()
                else "no answer"
            )
            await self.stop()
            msg = (
                f"revsync did not finish its start-up backfill within "
                f"REVSYNC_STARTUP_TIMEOUT={timeout:g}s (last error: {reason}); "
                f"check REVSYNC_REDIS_URL={self.bus.url} and REVSYNC_STORE_URL={self.store.url}"
            )
            if reason.startswith("bus:"):
                msg += f"; {SINGLE_PROCESS_HINT}"
            logger.error("revsync.startup_failed", reason=reason, timeout=timeout)
            raise RuntimeError(msg) from None

    def _log_in_process_bus(self) -> None:
        """Say at start-up that only this process hears this node's bus: loudly when the
        store is one other hosts may share (they would learn of changes only late)."""
        reach = (
            "this process only: other processes sharing the store learn of its changes "
            "at their next catch-up (REVSYNC_RESYNC_INTERVAL), not at once"
        )
        if self.store.url.startswith("sqlite"):
            logger.info("revsync.bus_in_process", bus=self.bus.url, reach=reach)
        else:
            hint = "several nodes need REVSYNC_REDIS_URL=redis://..."
            logger.warning("revsync.bus_in_process", bus=self.bus.url, reach=reach, hint=hint)

    async def _watch_startup(self, limit: float) -> None:
        try:
            async with asyncio.timeout(limit):
                await self.subscriber.synced.wait()
        except TimeoutError:
            logger.error(
                "revsync.startup_slow",
                timeout=limit,
                last_error=self.subscriber.last_error,
                action="still refusing every token and retrying",
            )

    async def stop(self) -> None:
        """Stop the background tasks and close connections; re-raise a task's crash."""
        if not self._started:
            return
        self._started = False
        self._ready = False
        self._confirmed_at = -math.inf
        if self._startup_watch is not None:
            self._startup_watch.cancel()
            await asyncio.gather(self._startup_watch, return_exceptions=True)
        # Writes whose callers went away still finish (and are announced) first.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10.0):
                await self._writes.drain()
        try:
            await self.subscriber.stop()
            await self.replica.save_checkpoint()  # a restart reads only what changes now
        finally:
            await self.bus.close()
            await self.store.close()

    def _on_confirmed(self) -> None:
        sub = self.subscriber
        store_sync = self.replica.last_store_sync
        if store_sync is not None and sub.last_heartbeat is not None:
            self._confirmed_at = min(store_sync, sub.last_heartbeat)
        # Ready to answer tokens: the snapshot is applied and a heartbeat came back.
        self._ready = sub.synced.is_set()

    # -- the request path ----------------------------------------------------------

    def is_revoked(self, claims: Mapping[str, Any]) -> bool:
        """Whether the token with these decoded claims must be refused.

        Synchronous and in memory: no I/O.  True before the start-up snapshot is
        applied, and in fail-closed mode while sync is stale (:meth:`check_token`, the
        JWT layer's loader, tells those apart from a revocation).  True also for a
        token issued more than REVSYNC_CUTOFF_TTL ago: a "log out everywhere" cut-off
        that applied to it may have been dropped already (docs/design.md).
        """
        if not self._ready:
            return True
        if self._fail_closed and time.monotonic() - self._confirmed_at > self._max_staleness:
            return True
        return self._in_set(claims)

    def check_token(self, claims: Mapping[str, Any]) -> bool:
        """The JWT layer's denylist loader: True when the token is revoked.

        Synchronous and in memory: no I/O.  Where :meth:`is_revoked` refuses because
        this node cannot vouch for its state (not ready yet, or stale in fail-closed
        mode), this raises :class:`revsync.jwt.RevocationStateUnavailable` instead, so
        the client hears "retry" (503), not "revoked" (401).  A token the node knows to
        be revoked is True in every state.
        """
        if self._in_set(claims):
            return True
        problem = self._unrecordable(claims)
        if problem is not None:
            # Fail safe: neither a logout nor "log out everywhere" could ever end it.
            raise JWTDecodeError(problem[0])
        if self._ready and not (
            self._fail_closed and time.monotonic() - self._confirmed_at > self._max_staleness
        ):
            return False
        error = self.unavailable()
        if error is None:  # went ready in between
            return False
        raise error

    def unavailable(self) -> RevocationStateUnavailable | None:
        """Why this node cannot judge tokens right now, as the error the JWT layer
        answers with (503 by default), or None when it can.  Safe to show a client."""
        retry_after = math.ceil(self.settings.resync_interval)  # bounded by the error
        if not self._ready:
            if not self._ever_started:
                why = (
                    "revsync was never started on this app: its before_serving hook did "
                    "not run (serve the app, or wrap test requests in "
                    "`async with app.test_app():`)"
                )
            elif not self._started:
                why = "revsync has stopped on this node"
            else:
                why = "this node has not finished its start-up sync"
            return _unavailable(why, retry_after)
        since = time.monotonic() - self._confirmed_at
        if self._fail_closed and since > self._max_staleness:
            why = (
                f"this node has had no confirmed sync for {since:.0f}s "
                f"(REVSYNC_MAX_STALENESS={self._max_staleness:g}s)"
            )
            return _unavailable(why, retry_after)
        return None

    def _in_set(self, claims: Mapping[str, Any]) -> bool:
        """The in-memory answer alone: revoked, cut off, or older than the cut-offs.

        A token without ``iat`` (minted elsewhere) skips the age check and counts as
        issued before any cut-off of its identity (RevocationSet.is_revoked).
        """
        iat = claims.get("iat")
        # iat < now - ttl, not now - iat > ttl: an int iat too large for a float
        # (-10**400) compares exactly instead of raising OverflowError.
        if (type(iat) is int or type(iat) is float) and iat < time.time() - self._cutoff_ttl:
            return True
        revocations = self.revocations
        if revocations.identity_count:
            identity = claims.get(self._identity_claim)
            key = None if identity is None else canonical_identity(identity)
            return revocations.is_revoked(claims.get("jti"), key, iat)
        return revocations.is_revoked(claims.get("jti"), None, None)

    # -- writes ----------------------------------------------------------------------

    async def revoke(self, claims: Mapping[str, Any]) -> Change:
        """Revoke the token these decoded claims belong to (e.g. ``get_raw_jwt()``)."""
        if not isinstance(claims, Mapping):
            msg = f"revoke() takes decoded claims, got {type(claims).__name__}"  # type: ignore[unreachable]
            raise TypeError(msg)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            msg = "cannot revoke a token without a jti claim"
            raise ValueError(msg)
        exp = self._revocation_expiry(claims)
        if exp is None:
            msg = (
                f"cannot revoke token {jti!r}: it has no numeric exp or iat claim, so its "
                "revocation could never expire"
            )
            raise ValueError(msg)
        identity = claims.get(self._identity_claim)
        return await self.revoke_jti(jti, exp, identity=identity)

    def _revocation_expiry(self, claims: Mapping[str, Any]) -> float | None:
        """How long a revocation of this token must be kept: its ``exp``; for a token
        that never expires (``JWT_ACCESS_TOKEN_EXPIRES = False``), ``iat`` plus
        REVSYNC_CUTOFF_TTL, after which :meth:`is_revoked` refuses it for its age."""
        exp, iat = claims.get("exp"), claims.get("iat")
        if type(exp) is int or type(exp) is float:
            return exp
        if exp is None and (type(iat) is int or type(iat) is float):
            return iat + self._cutoff_ttl
        return None

    async def revoke_jti(
        self, jti: str, expires_at: float | datetime, *, identity: object = None
    ) -> Change:
        """Revoke one token by id until ``expires_at`` (its ``exp``: unix time or datetime).

        Returns once the revocation is durable in the store and applied on this node;
        other nodes hear of it over the bus (or, if that fails, on their next resync).
        Raises StoreError if the store could not record it: nothing was published.
        """
        request = ChangeRequest(
            Kind.JTI,
            _check_jti(jti),
            True,
            _unix_time(expires_at, "expires_at"),
            None if identity is None else canonical_identity(identity),
        )
        (change,) = await self._write([request])
        logger.info("revsync.revoked", jti=change.key, seq=change.seq, **self._who(change.identity))
        return change

    async def unrevoke(self, jti: str) -> Change:
        """Lift a revocation.  Other nodes re-read it from the store before obeying."""
        jti = _check_jti(jti)
        current = await self.store.get(Kind.JTI, jti)
        expires_at = current.expires_at if current is not None else time.time()
        (change,) = await self._write([ChangeRequest(Kind.JTI, jti, False, expires_at)])
        logger.info("revsync.unrevoked", jti=jti, seq=change.seq)
        return change

    async def revoke_identity(self, identity: object) -> Change:
        """Revoke every token of ``identity`` issued up to now ("log out everywhere").

        Tokens whose ``iat`` is at or before this second are refused; the cut-off is
        kept until the longest-lived of them would have expired.
        """
        if identity is None:
            msg = "revoke_identity() needs an identity, got None"
            raise ValueError(msg)
        key = canonical_identity(identity)
        now = time.time()
        request = ChangeRequest(
            Kind.IDENTITY, key, True, now + self.settings.cutoff_ttl, key, cutoff=now
        )
        (change,) = await self._write([request])
        logger.info("revsync.identity_revoked", seq=change.seq, **self._who(key))
        return change

    async def unrevoke_identity(self, identity: object) -> Change:
        """Lift an identity's cut-off (its individually revoked tokens stay revoked)."""
        key = canonical_identity(identity)
        current = await self.store.get(Kind.IDENTITY, key)
        expires_at = current.expires_at if current is not None else time.time()
        request = ChangeRequest(Kind.IDENTITY, key, False, expires_at, key)
        (change,) = await self._write([request])
        logger.info("revsync.identity_unrevoked", seq=change.seq, **self._who(key))
        return change

    async def revoke_many(
        self, tokens: Iterable[Mapping[str, Any] | tuple[str, float]]
    ) -> list[Change]:
        """Revoke many tokens in one store write.

        Each item is either decoded claims or a ``(jti, exp)`` pair.  The SQL stores
        write the batch in one transaction; the Redis store in parts, and if a part
        fails after others were written it raises ``PartialWriteError`` holding them
        (applied here and announced all the same).  docs/design.md, "Mass revocations".
        """
        requests = []
        for item in tokens:
            plain = _plain_pair(item)
            if plain is not None:
                requests.append(plain)
                continue
            if isinstance(item, Mapping):
                jti, exp = item.get("jti"), self._revocation_expiry(item)
                identity = item.get(self._identity_claim)
            else:
                jti, exp = item
                identity = None
            if not isinstance(jti, str) or not isinstance(exp, int | float | datetime):
                msg = f"revoke_many() needs a jti and an exp for every token, got {item!r}"
                raise ValueError(msg)
            requests.append(
                ChangeRequest(
                    Kind.JTI,
                    _check_jti(jti),
                    True,
                    _unix_time(exp, "exp"),
                    None if identity is None else canonical_identity(identity),
                )
            )
        if not requests:
            return []
        changes = await self._write(requests)
        logger.info(
            "revsync.revoked_many",
            count=len(changes),
            first_seq=changes[0].seq,
            last_seq=changes[-1].seq,
        )
        return changes

    def _who(self, identity: object) -> dict[str, Any]:
        """The identity field of an info line: only with REVSYNC_LOG_IDENTITIES, or
        when debug lines are written."""
        return logger.identity(identity, always=self.settings.log_identities)

    async def list_revocations(self, identity: object) -> list[Change]:
        """The store's live revocations of one identity (its tokens and cut-offs)."""
        now = time.time()
        rows = await self.store.by_identity(canonical_identity(identity))
        return [row for row in rows if row.revoked and row.expires_at + self.settings.leeway > now]

    async def _write(self, requests: list[ChangeRequest]) -> list[Change]:
        """Write ``requests`` in one transaction, apply them here, announce them.

        Everything that could fail after the store commits is checked first (a change
        whose event would be refused raises ValueError here, with nothing written);
        once the store has committed, nothing else becomes the caller's error.  The
        whole runs to completion even if the caller is cancelled (revsync._shielded).
        """
        check_announceable_many(requests, self.settings.node_id, time.time())
        return await self._writes.run(self._commit(requests))

    async def _commit(self, requests: list[ChangeRequest]) -> list[Change]:
        if len(requests) == 1:
            changes = await self._write_and_announce(lambda: _listed(self.store.write(requests[0])))
        elif len(requests) <= PUBLISH_EACH_LIMIT:
            changes = await self._write_and_announce(lambda: self.store.write_many(requests))
        else:
            changes = await self._write_batch(requests)
        assert changes is not None  # these writes always return their changes
        return changes

    async def _write_batch(self, requests: list[ChangeRequest]) -> list[Change]:
        """Write a large batch; as each part the store commits becomes durable, announce
        it (every ANNOUNCE_EVERY changes and at the end) and apply it here.

        Only the last change of an announcement is published: its sequence gap makes
        every node read what came before it from the store, while the rest is still
        being written (the Redis store writes a batch in parts).  If a later part
        fails, what is durable is announced and applied all the same, and the error
        (PartialWriteError) raised.  docs/design.md, "Mass revocations".
        """
        mark = self.replica.write_mark()
        durable: list[Change] = []
        announced = 0
        applying: list[asyncio.Task[None]] = []

        async def commit(part: list[Change]) -> None:
            nonlocal announced
            durable.extend(part)
            if len(durable) - announced >= ANNOUNCE_EVERY or len(durable) == len(requests):
                announced = len(durable)
                await self._publish(durable[-1])
            # Applied while the store writes the next part, and usually before this
            # node's own subscriber hears the announcement (it then finds the changes
            # held instead of catching up to them).  Never raises.
            applying.append(asyncio.create_task(self.replica.apply_local(*part, mark=mark)))

        async def write() -> list[Change]:
            try:
                return await self.store.write_many(requests, on_commit=commit)
            except PartialWriteError as exc:
                if len(durable) > announced:
                    await self._publish(durable[-1])
                logger.warning(
                    "revsync.write_partly_failed",
                    written=len(durable),
                    requested=len(requests),
                    first_seq=durable[0].seq,
                    last_seq=durable[-1].seq,
                    error=f"{type(exc.__cause__ or exc).__name__}: {exc.__cause__ or exc}",
                )
                raise
            finally:
                await asyncio.gather(*applying)

        changes = await self._write_and_announce(write, mark=mark, done_by_write=True)
        assert changes is not None  # write() always returns its changes
        return changes

    async def write_changes(
        self, write: Callable[[], Awaitable[list[Change] | None]]
    ) -> list[Change] | None:
        """Run a store write that returns the changes it committed (or None for none),
        apply them here and announce them; finished even if the caller is cancelled.

        Every change must have passed ``events.check_announceable`` before: once the
        store has committed, nothing may stop it from being announced.
        """
        return await self._writes.run(self._write_and_announce(write))

    async def _write_and_announce(
        self,
        write: Callable[[], Awaitable[list[Change] | None]],
        *,
        mark: WriteMark | None = None,
        done_by_write: bool = False,
    ) -> list[Change] | None:
        """Run ``write``, apply what it wrote here, then announce it (unless ``write``
        applied and announced it itself: ``done_by_write``)."""
        # The mark taken before the write lets the replica tell a late own write from a
        # newer change it applied meanwhile (Replica.apply_local).
        if mark is None:
            mark = self.replica.write_mark()
        started = time.perf_counter()
        try:
            changes = await write()
        except StoreError:
            self.stats.store_write_failures += 1
            raise
        finally:
            # Plain callbacks into memory (a histogram): no I/O on the request path.
            elapsed = time.perf_counter() - started
            for observe in self.stats.write_observers:
                observe(elapsed)
        if changes is not None and not done_by_write:
            await self.replica.apply_local(*changes, mark=mark)
            # Past PUBLISH_EACH_LIMIT only the last is published: its sequence gap
            # makes every node read the write from the store.
            to_publish = changes if len(changes) <= PUBLISH_EACH_LIMIT else changes[-1:]
            for change in to_publish:
                await self._publish(change)
        return changes

    async def shielded(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` to completion even if the caller is cancelled (and wait for it in
        ``stop``)."""
        return await self._writes.run(work)

    async def _publish(self, change: Change) -> None:
        try:
            event = RevocationEvent.from_change(change, self.settings.node_id, time.time())
            await self.bus.publish(encode_event(event, self.settings.event_key))
        except Exception as exc:
            # Durable already: never the caller's error.  The other nodes will read it
            # on their next resync.
            self.stats.publish_failures += 1
            logger.warning(
                "revsync.publish_failed", seq=change.seq, error=f"{type(exc).__name__}: {exc}"
            )
        else:
            self.stats.published += 1

    # -- what the registry asks of the node (revsync.registry.RevocationEngine) ---------

    @property
    def store_seq(self) -> int:
        """The highest store seq this node has read from the store itself."""
        return self.replica.store_seq

    def is_registered(self, jti: object) -> bool:
        """Whether this node's set holds ``jti`` as a registered (issued) token."""
        return self.revocations.is_allowed(jti)

    def request_catch_up(self) -> None:
        """Have the subscriber read the store soon (one catch-up at a time)."""
        self.subscriber.request_catch_up()

    # -- introspection -----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once the start-up snapshot is applied and the node's first heartbeat came
        back over the bus (stale or not since)."""
        return self._ready

    def status(self) -> dict[str, Any]:
        """Ready, cursors, staleness, entry counts, connection state and counters.

        ``ready`` is what /readyz answers (docs/design.md, "Readiness"): synced once
        and, in fail-closed mode, not stale.  A fail-open node stays ready while stale
        (``stale: true``, with the reason): it still serves, and a shared Redis outage
        must not take every node out of its Service at once.  ``synced`` is ready and
        not stale, whatever the mode.
        """
        sub = self.subscriber
        position = self.replica.history.position
        since = sub.seconds_since_sync()
        stale = since is None or since > self._max_staleness
        reason = None
        if not sub.ready.is_set():
            reason = f"start-up backfill not complete ({sub.last_error or 'in progress'})"
        elif not self._ready:
            reason = f"waiting for the first heartbeat back over the bus ({sub.last_error})"
        elif stale:
            reason = (
                f"no confirmed sync for {'ever' if since is None else f'{since:.1f}s'} "
                f"(max {self._max_staleness:g}s; last error: {sub.last_error})"
            )
        return {
            "node_id": self.settings.node_id,
            "ready": self._ready and not (stale and self._fail_closed),
            "synced": self._ready and not stale,
            "backfilled": sub.ready.is_set(),
            "backfill": {"seconds": self.stats.backfill_seconds, "rows": self.stats.backfill_rows},
            "stale": stale,
            "reason": reason,
            "fail_mode": self.settings.fail_mode,
            "last_applied_seq": self.replica.bus_seq,
            "store_seq": self.replica.store_seq,
            "store_epoch": None if position is None else position.epoch,
            "unconfirmed_restrictions": self.replica.overlay_count,
            "queued_bytes": sub.queued_bytes,
            "seconds_since_sync": None if since is None else round(since, 3),
            "max_staleness": self._max_staleness,
            "entries": {
                "jti": self.revocations.jti_count,
                "identity": self.revocations.identity_count,
            },
            "connection": {"bus": sub.bus_state, "last_error": sub.last_error},
            "store": self.store.url,
            "counters": self.stats.as_dict(),
        }


def _unavailable(why: str, retry_after: int) -> RevocationStateUnavailable:
    return RevocationStateUnavailable(f"Revocation state is unavailable: {why}", retry_after)


def _string_budget(origin: str) -> int:
    """Bytes a node's events have left for their key and identity strings: the
    largest event of ``origin`` with one-character strings, measured once."""
    probe = Change(MAX_SEQ, Kind.IDENTITY, "k", True, _LONGEST_TIME, "i", _LONGEST_TIME, 0.0)
    event = RevocationEvent.from_change(probe, origin, _LONGEST_TIME)
    size = len(encode_event(event, b"any key: a signature is as long"))
    return MAX_EVENT_BYTES - ANNOUNCE_MARGIN - size + 2


def _check_jti(jti: object) -> str:
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
        msg = f"a jti must be a non-empty string of at most {MAX_JTI_CHARS} characters, got {jti!r}"
        raise ValueError(msg)
    return jti


def _plain_pair(item: object) -> ChangeRequest | None:
    """The request of a ``(jti, exp)`` pair of a str and a finite int or float (the usual
    item of a batch of 100,000), as ``revoke_many`` makes it without its checks' calls;
    None for any other item (checked the long way)."""
    if not isinstance(item, tuple) or item.__class__ is not tuple or len(item) != 2:
        return None
    jti, exp = item
    if (
        jti.__class__ is str
        and 0 < len(jti) <= MAX_JTI_CHARS
        and (exp.__class__ is float or exp.__class__ is int)
        and exp - exp == 0  # finite
    ):
        fields = (Kind.JTI, jti, True, float(exp), None, None)
        request: ChangeRequest = tuple.__new__(ChangeRequest, fields)
        return request
    return None


def _unix_time(value: object, name: str) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            msg = f"{name} must be timezone-aware, got naive {value!r}"
            raise ValueError(msg)
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    msg = f"{name} must be a unix time or an aware datetime, got {value!r}"
    raise ValueError(msg)


async def _listed(change: Awaitable[Change]) -> list[Change]:
    return [await change]


def _signature() -> inspect.Signature:
    """RevSync's signature with every setting as a keyword, for help() and editors."""
    own = inspect.signature(RevSync.__init__)
    kept = [p for p in own.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    settings = [
        inspect.Parameter(
            keyword,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=f"{types[keyword]} | None",
        )
        for keyword in KEYWORDS
    ]
    return own.replace(parameters=[*kept, *settings])


RevSync.__init__.__signature__ = _signature()  # type: ignore[attr-defined]
