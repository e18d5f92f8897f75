"""``JWTManager``: holds an app's loaders and turns JWT errors into responses."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta
from typing import Any, TypeVar

from jwt import ExpiredSignatureError, InvalidTokenError
from quart import Quart, g

from revsync._logging import get_logger
from revsync.jwt import default_callbacks as defaults
from revsync.jwt import exceptions as errors
from revsync.jwt._steps import Steps, settle
from revsync.jwt.config import (
    DEFAULTS,
    JWTConfig,
    check_secret_strength,
    current_config,
    parse_expiry,
)
from revsync.jwt.tokens import (
    build_payload,
    check_csrf,
    decode_complete,
    encode_payload,
    read_unverified,
)

logger = get_logger()

MAX_JTI_CHARS = 512
"""The longest jti a revocation can name (``RevSync.revoke_jti`` refuses longer ones)."""

MAX_EXP = 10**15
"""The latest exp a revocation can record (year ~31 million: revsync's events refuse
later times)."""

INVALID_JTI = f"Token has an invalid jti claim (1 to {MAX_JTI_CHARS} characters of text)"
"""The 422 message for a jti no revocation can name, under a revocation check."""

NEVER_BOUNDED = (
    "Token has no exp and no iat claim, so its revocation cannot be checked "
    "(it never expires and tells no issue time)"
)
"""The 422 message for a token no revocation can bound, under a revocation check."""

EXTENSION_KEY = "revsync.jwt"
"""``app.extensions`` key under which ``init_app`` registers the manager."""
_WAITING_KEY = "revsync.jwt.on_manager"
"""``app.extensions`` key of the callbacks given to :func:`on_manager`."""

PayloadHook = Callable[[str, dict[str, Any]], None]
"""Called with (token type, payload) just before a new token is signed."""

C = TypeVar("C", bound=Callable[..., Any])

_EXPIRED_NO_ARGUMENT = (
    "jwt.expired_token_loader callback now takes the expired token as an additional "
    "parameter. Example: expired_callback(token)"
)
"""quart-jwt-extended 0.1.0's warning for an expired loader without argument."""

_DECODE_KEY_ONE_ARGUMENT = (
    "The single-argument (unverified_claims) form of decode_key_callback is deprecated. "
    "Update your code to use the two-argument form (unverified_claims, unverified_headers)."
)
"""quart-jwt-extended 0.1.0's warning for a decode key loader taking only the claims
(its three parts joined: a stray comma there makes the original a tuple)."""


def _positional_arity(fn: Callable[..., Any]) -> int | None:
    """How many positional arguments ``fn`` takes; ``None`` for ``*args`` or unknown."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    count = 0
    for parameter in parameters:
        if parameter.kind is parameter.VAR_POSITIONAL:
            return None
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


class JWTManager:
    """Holds the JWT settings' callbacks for one or more Quart apps.

    Every loader may be a plain function or a coroutine function; coroutine results
    are awaited.  Not bound to an app: create it at import time and call
    :meth:`init_app` from a factory, or pass the app to the constructor.
    """

    def __init__(self, app: Quart | None = None) -> None:
        """Create the manager, and register it with ``app`` when one is given."""
        self._user_claims_callback: Callable[..., Any] = defaults.default_user_claims_callback
        self._user_identity_callback: Callable[..., Any] = defaults.default_user_identity_callback
        self._jwt_additional_header_callback: Callable[..., Any] = (
            defaults.default_jwt_headers_callback
        )
        self._expired_token_callback: Callable[..., Any] = defaults.default_expired_token_callback
        self._expired_callback_takes_token = True
        self._invalid_token_callback: Callable[..., Any] = defaults.default_invalid_token_callback
        self._unauthorized_callback: Callable[..., Any] = defaults.default_unauthorized_callback
        self._needs_fresh_token_callback: Callable[..., Any] = (
            defaults.default_needs_fresh_token_callback
        )
        self._revoked_token_callback: Callable[..., Any] = defaults.default_revoked_token_callback
        self._revocation_unavailable_callback: Callable[..., Any] = (
            defaults.default_revocation_unavailable_callback
        )
        self._user_loader_error_callback: Callable[..., Any] = (
            defaults.default_user_loader_error_callback
        )
        self._verify_claims_failed_callback: Callable[..., Any] = (
            defaults.default_verify_claims_failed_callback
        )
        # Loaders that default to "not used": None skips their work on the request path.
        self._user_loader_callback: Callable[..., Any] | None = None
        self._denylist_callback: Callable[..., Any] | None = None
        self._denylist_callback_takes_header = False
        self._claims_verification_callback: Callable[..., Any] | None = None
        self._decode_key_callback: Callable[..., Any] | None = None
        self._decode_key_callback_takes_header = True
        self._encode_key_callback: Callable[..., Any] | None = None
        # They may add or pin claims (the token registry pins jti/exp and adds rsq/fam).
        self._payload_hooks: list[PayloadHook] = []
        if app is not None:
            self.init_app(app)

    # -- registration ---------------------------------------------------------------

    def init_app(self, app: Quart) -> None:
        """Register with ``app``: default config, error handlers, ``app.extensions``.

        Sets ``app.extensions["revsync.jwt"] = self`` and calls the callbacks that
        :func:`on_manager` left waiting for it (RevSync installs its loader so).
        """
        for key, value in DEFAULTS.items():
            # A list default (JWT_CSRF_METHODS) is copied: each app may edit its own.
            app.config.setdefault(key, value.copy() if isinstance(value, list) else value)
        check_secret_strength(app.config)
        handlers: dict[type[Exception], Callable[[Any], Any]] = {
            errors.NoAuthorizationError: self._handle_unauthorized,
            errors.CSRFError: self._handle_unauthorized,
            ExpiredSignatureError: self._handle_expired,
            InvalidTokenError: self._handle_invalid,
            errors.InvalidHeaderError: self._handle_invalid,
            errors.JWTDecodeError: self._handle_invalid,
            errors.WrongTokenError: self._handle_invalid,
            errors.RevokedTokenError: self._handle_revoked,
            errors.RevocationStateUnavailable: self._handle_revocation_unavailable,
            errors.FreshTokenRequired: self._handle_needs_fresh,
            errors.UserLoadError: self._handle_user_load_error,
            errors.UserClaimsVerificationError: self._handle_claims_failed,
            errors.RevocationNotConfiguredError: self._handle_no_denylist_loader,
        }
        for exception, handler in handlers.items():
            app.register_error_handler(exception, handler)
        if _check_settings not in app.before_serving_funcs:
            app.before_serving(_check_settings)
        app.extensions[EXTENSION_KEY] = self
        # Kept, not consumed: a second manager registered on the app is wired too.
        for callback in app.extensions.get(_WAITING_KEY, ()):
            callback(self)

    def add_payload_hook(self, hook: PayloadHook) -> None:
        """Call ``hook(token type, payload)`` before each new token is signed, after the
        hooks added before it (once, however often it is added)."""
        if hook not in self._payload_hooks:
            self._payload_hooks.append(hook)

    @property
    def denylist_loader(self) -> Callable[..., Any] | None:
        """The registered denylist loader, or ``None``.  Read-only."""
        return self._denylist_callback

    def token_in_denylist_loader(self, callback: C) -> C:
        """Register the loader that says whether a token is revoked.

        It is called with the decoded claims dict (``claims["jti"]``,
        ``claims["type"]``, the identity claim, ``exp``, ``iat``...) of every token
        whose type is in ``JWT_BLACKLIST_TOKEN_CHECKS``, when ``JWT_BLACKLIST_ENABLED``
        is set, and returns a truthy value when the token is revoked.  A loader taking
        two positional arguments is called as ``(header, claims)``, as in
        flask-jwt-extended 4.  It runs on every protected request: keep it in memory.
        """
        self._denylist_callback = callback
        self._denylist_callback_takes_header = _positional_arity(callback) == 2
        return callback

    # quart-jwt-extended's and flask-jwt-extended 4's names for the same.
    token_in_blacklist_loader = token_in_denylist_loader
    token_in_blocklist_loader = token_in_denylist_loader

    def user_claims_loader(self, callback: C) -> C:
        """Register ``callback(identity) -> dict`` adding claims to access tokens."""
        self._user_claims_callback = callback
        return callback

    def user_identity_loader(self, callback: C) -> C:
        """Register ``callback(identity) -> JSON value`` stored as the identity claim."""
        self._user_identity_callback = callback
        return callback

    def additional_headers_loader(self, callback: C) -> C:
        """Register ``callback(identity) -> dict`` of extra JOSE headers for new tokens."""
        self._jwt_additional_header_callback = callback
        return callback

    def expired_token_loader(self, callback: C) -> C:
        """Register ``callback(expired_claims) -> response`` for expired tokens.

        A callback taking no argument is still called without one, with a
        DeprecationWarning at each call, as in quart-jwt-extended.
        """
        self._expired_token_callback = callback
        self._expired_callback_takes_token = _positional_arity(callback) != 0
        return callback

    def invalid_token_loader(self, callback: C) -> C:
        """Register ``callback(reason: str) -> response`` for invalid tokens (422)."""
        self._invalid_token_callback = callback
        return callback

    def unauthorized_loader(self, callback: C) -> C:
        """Register ``callback(reason: str) -> response`` for requests without a token."""
        self._unauthorized_callback = callback
        return callback

    def needs_fresh_token_loader(self, callback: C) -> C:
        """Register ``callback() -> response`` for non-fresh tokens on fresh endpoints."""
        self._needs_fresh_token_callback = callback
        return callback

    def revoked_token_loader(self, callback: C) -> C:
        """Register ``callback() -> response`` for revoked tokens."""
        self._revoked_token_callback = callback
        return callback

    def revocation_unavailable_loader(self, callback: C) -> C:
        """Register ``callback(error) -> response`` for a token the denylist loader could
        not judge (it raised :class:`~revsync.jwt.RevocationStateUnavailable`, whose
        ``reason`` and ``retry_after`` the callback may use).

        Default: 503 with ``Retry-After: error.retry_after`` and ``str(error)`` under
        ``JWT_ERROR_MESSAGE_KEY``.  Not quart-jwt-extended's: its loaders never raise it.
        """
        self._revocation_unavailable_callback = callback
        return callback

    def user_loader_callback_loader(self, callback: C) -> C:
        """Register ``callback(identity) -> user or None``; the user is ``current_user``."""
        self._user_loader_callback = callback
        return callback

    def user_loader_error_loader(self, callback: C) -> C:
        """Register ``callback(identity) -> response`` for when the user loader gives None."""
        self._user_loader_error_callback = callback
        return callback

    def claims_verification_loader(self, callback: C) -> C:
        """Register ``callback(user_claims) -> bool`` checking an access token's claims."""
        self._claims_verification_callback = callback
        return callback

    def claims_verification_failed_loader(self, callback: C) -> C:
        """Register ``callback() -> response`` for when claims verification fails."""
        self._verify_claims_failed_callback = callback
        return callback

    def decode_key_loader(self, callback: C) -> C:
        """Register ``callback(unverified_claims, unverified_header) -> key`` for decoding.

        A callback taking only the claims is still called with them alone, with a
        DeprecationWarning at each call, as in quart-jwt-extended.
        """
        self._decode_key_callback = callback
        self._decode_key_callback_takes_header = _positional_arity(callback) != 1
        return callback

    def encode_key_loader(self, callback: C) -> C:
        """Register ``callback(identity) -> key`` for signing new tokens."""
        self._encode_key_callback = callback
        return callback

    # -- token creation and decoding (generators: see _steps.py) --------------------

    def create_token_steps(
        self,
        cfg: JWTConfig,
        kind: str,
        identity: Any,
        *,
        fresh: bool | timedelta = False,
        expires_delta: Any = None,
        user_claims: Any = None,
        headers: dict[str, Any] | None = None,
    ) -> Steps[str]:
        """Steps building a new ``kind`` token for ``identity``."""
        if expires_delta is None:
            expires = cfg.expires_for(kind)
        else:
            expires = parse_expiry(expires_delta, "expires_delta")
        if user_claims is None and (kind == "access" or cfg.claims_in_refresh_token):
            user_claims = yield self._user_claims_callback(identity)
        if headers is None:
            headers = yield self._jwt_additional_header_callback(identity)
        claim_value = yield self._user_identity_callback(identity)
        if self._encode_key_callback is None:
            key = cfg.require_encode_key()
        else:
            key = yield self._encode_key_callback(identity)
        payload = build_payload(cfg, kind, claim_value, expires, user_claims, fresh)
        for hook in self._payload_hooks:
            hook(kind, payload)
        return encode_payload(cfg, payload, key, headers)

    def decode_steps(
        self,
        cfg: JWTConfig,
        token: str,
        *,
        allow_expired: bool = False,
        csrf_value: str | None = None,
    ) -> Steps[tuple[dict[str, Any], dict[str, Any]]]:
        """Steps verifying ``token``; they return ``(claims, header)``.

        On an expired token the claims are kept on ``g`` for the expired loader.
        """
        callback = self._decode_key_callback
        if callback is None:
            key = cfg.require_decode_key()
        else:
            unverified_claims, unverified_header = read_unverified(token)
            if self._decode_key_callback_takes_header:
                key = yield callback(unverified_claims, unverified_header)
            else:
                warnings.warn(_DECODE_KEY_ONE_ARGUMENT, DeprecationWarning, stacklevel=2)
                key = yield callback(unverified_claims)
        try:
            claims, header = decode_complete(
                cfg, token, key, allow_expired=allow_expired, cacheable=callback is None
            )
        except ExpiredSignatureError:
            with suppress(InvalidTokenError, errors.JWTExtendedException):
                g._jwt_extended_expired_jwt = decode_complete(cfg, token, key, allow_expired=True)[
                    0
                ]
            raise
        if csrf_value:
            check_csrf(claims, csrf_value)
        return claims, header

    # -- request-path checks ---------------------------------------------------------

    async def check_not_revoked(
        self, cfg: JWTConfig, claims: dict[str, Any], header: dict[str, Any]
    ) -> None:
        """Raise :class:`errors.RevokedTokenError` if the denylist loader says so (and let
        its :class:`errors.RevocationStateUnavailable` through)."""
        if not cfg.denylist_enabled:
            return
        callback = self._denylist_callback
        if callback is None:
            msg = (
                "JWT_BLACKLIST_ENABLED is set but no loader was registered with "
                "@jwt.token_in_blacklist_loader"
            )
            raise errors.RevocationNotConfiguredError(msg)
        if claims["type"] not in cfg.denylist_checks:
            return
        problem = _unrevocable(claims)
        if problem is not None:
            # Fail safe: a token no revocation could name or bound is refused with a
            # clear answer rather than judged "not revoked" (docs/migration.md).
            raise errors.JWTDecodeError(problem)
        if self._denylist_callback_takes_header:
            revoked = await settle(callback(header, claims))
        else:
            revoked = await settle(callback(claims))
        if revoked:
            msg = "Token has been revoked"
            raise errors.RevokedTokenError(msg)

    async def verify_user_claims(self, cfg: JWTConfig, claims: dict[str, Any]) -> None:
        """Raise :class:`errors.UserClaimsVerificationError` if the claims loader refuses."""
        callback = self._claims_verification_callback
        if callback is not None and not await settle(callback(claims[cfg.user_claims_key])):
            msg = "User claims verification failed"
            raise errors.UserClaimsVerificationError(msg)

    async def load_user(self, identity: Any) -> None:
        """Run the user loader, if any, and keep its user for ``current_user``."""
        callback = self._user_loader_callback
        if callback is None:
            return
        user = await settle(callback(identity))
        if user is None:
            msg = f"user_loader returned None for {identity}"
            raise errors.UserLoadError(msg)
        g._jwt_extended_jwt_user = user

    # -- error handlers ----------------------------------------------------------------

    async def _handle_unauthorized(self, error: Exception) -> Any:
        return await settle(self._unauthorized_callback(str(error)))

    async def _handle_invalid(self, error: Exception) -> Any:
        return await settle(self._invalid_token_callback(str(error)))

    async def _handle_expired(self, error: Exception) -> Any:
        if not self._expired_callback_takes_token:
            warnings.warn(_EXPIRED_NO_ARGUMENT, DeprecationWarning, stacklevel=2)
            return await settle(self._expired_token_callback())
        expired = getattr(g, "_jwt_extended_expired_jwt", {})
        return await settle(self._expired_token_callback(expired))

    async def _handle_revoked(self, error: Exception) -> Any:
        return await settle(self._revoked_token_callback())

    async def _handle_revocation_unavailable(self, error: Exception) -> Any:
        return await settle(self._revocation_unavailable_callback(error))

    async def _handle_needs_fresh(self, error: Exception) -> Any:
        return await settle(self._needs_fresh_token_callback())

    async def _handle_user_load_error(self, error: Exception) -> Any:
        claims = getattr(g, "_jwt_extended_jwt", {})
        identity = claims.get(current_config().identity_claim)
        return await settle(self._user_loader_error_callback(identity))

    async def _handle_claims_failed(self, error: Exception) -> Any:
        return await settle(self._verify_claims_failed_callback())

    async def _handle_no_denylist_loader(self, error: Exception) -> Any:
        logger.error("revsync.no_denylist_loader", error=str(error))
        return {current_config().error_msg_key: "Internal server error"}, 500


def _unrevocable(claims: dict[str, Any]) -> str | None:
    """Why no revocation could name or bound the token of ``claims``, or None.

    Its claims were type-checked on decoding (``tokens.py``): a present exp or iat is
    a finite number.
    """
    jti = claims.get("jti")
    if jti is None:  # minted elsewhere: nothing to look up
        return "Token has no jti claim, so its revocation cannot be checked"
    if not (isinstance(jti, str) and 0 < len(jti) <= MAX_JTI_CHARS and _utf8(jti)):
        # revoke_jti refuses such a jti, so the token could never be refused.
        return INVALID_JTI
    exp = claims.get("exp")
    if exp is None and claims.get("iat") is None:
        # Never expiring and undated: a revocation would have to be kept forever, and no
        # "log out everywhere" cut-off can be compared with it once the cut-off is
        # dropped (docs/design.md, "Long-lived tokens").  An iat keeps it checkable.
        return NEVER_BOUNDED
    if exp is not None and exp > MAX_EXP:
        return f"Token has an exp claim later than a revocation can record ({MAX_EXP})"
    return None


def _utf8(text: str) -> bool:
    """Whether ``text`` is valid Unicode (JSON may carry a lone surrogate, ``"\\ud800"``)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _check_settings() -> None:
    """Read every ``JWT_*`` setting once when the app starts serving, so a bad one
    stops the start with the error naming its key, instead of failing each request."""
    current_config()


def on_manager(app: Quart, callback: Callable[[JWTManager], None]) -> None:
    """Call ``callback`` with ``app``'s JWTManager now if it has one, and with every
    manager registered with ``app`` later (extensions set up in either order)."""
    callbacks: list[Callable[[JWTManager], None]] = app.extensions.setdefault(_WAITING_KEY, [])
    if callback not in callbacks:
        callbacks.append(callback)
    manager = app.extensions.get(EXTENSION_KEY)
    if manager is not None:
        callback(manager)
