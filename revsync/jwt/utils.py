"""Public helpers: create and decode tokens, read the current request's token.

``create_access_token``, ``create_refresh_token``, ``decode_token`` and ``get_jti``
are synchronous, as in quart-jwt-extended, as long as the loaders they call are
plain functions.  When one of those loaders (user claims, user identity, additional
headers, encode key, decode key) is a coroutine function, they return an awaitable
of the same value instead: write ``await create_access_token(...)`` then.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import jwt
from quart import current_app, g
from werkzeug.local import LocalProxy

from revsync.jwt._steps import Steps, run_steps
from revsync.jwt.config import JWTConfig, config_for, current_config
from revsync.jwt.exceptions import JWTDecodeError
from revsync.jwt.manager import EXTENSION_KEY

if TYPE_CHECKING:
    from revsync.jwt.manager import JWTManager


def jwt_context() -> tuple[JWTManager, JWTConfig]:
    """The current app's :class:`JWTManager` and parsed :class:`JWTConfig`."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    manager = app.extensions.get(EXTENSION_KEY)
    if manager is None:
        msg = (
            "You must initialize a JWTManager with this quart application before using this method"
        )
        raise RuntimeError(msg)
    return manager, config_for(app)


def create_access_token(
    identity: Any,
    fresh: bool | timedelta = False,
    expires_delta: timedelta | int | bool | None = None,
    user_claims: Any = None,
    headers: dict[str, Any] | None = None,
) -> str:
    """Create a new encoded access token for ``identity``.

    ``fresh``: True marks the token fresh; a timedelta keeps it fresh that long.
    ``expires_delta``: lifetime overriding ``JWT_ACCESS_TOKEN_EXPIRES``; False for a
    token without ``exp`` (refused on decode unless the app's expiry is False too).
    ``user_claims`` overrides the user claims loader; ``headers`` adds JOSE headers.
    """
    manager, cfg = jwt_context()
    steps = manager.create_token_steps(
        cfg,
        "access",
        identity,
        fresh=fresh,
        expires_delta=expires_delta,
        user_claims=user_claims,
        headers=headers,
    )
    return cast(str, run_steps(steps))


def create_refresh_token(
    identity: Any,
    expires_delta: timedelta | int | bool | None = None,
    user_claims: Any = None,
    headers: dict[str, Any] | None = None,
) -> str:
    """Create a new encoded refresh token for ``identity`` (see create_access_token)."""
    manager, cfg = jwt_context()
    steps = manager.create_token_steps(
        cfg,
        "refresh",
        identity,
        expires_delta=expires_delta,
        user_claims=user_claims,
        headers=headers,
    )
    return cast(str, run_steps(steps))


def decode_token(
    encoded_token: str, csrf_value: str | None = None, allow_expired: bool = False
) -> dict[str, Any]:
    """Verify an encoded token and return its claims (raises on any invalid token)."""
    manager, cfg = jwt_context()

    def steps() -> Steps[dict[str, Any]]:
        claims, _ = yield from manager.decode_steps(
            cfg, encoded_token, allow_expired=allow_expired, csrf_value=csrf_value
        )
        return claims

    return cast(dict[str, Any], run_steps(steps()))


def get_jti(encoded_token: str) -> str:
    """The ``jti`` (unique id) of a verified encoded token."""
    manager, cfg = jwt_context()

    def steps() -> Steps[str]:
        claims, _ = yield from manager.decode_steps(cfg, encoded_token)
        jti: str = claims["jti"]
        return jti

    return cast(str, run_steps(steps()))


def get_csrf_token(encoded_token: str) -> str:
    """The CSRF double-submit value (``csrf`` claim) of a verified encoded token.

    Tokens carry one when "cookies" is a token location and
    ``JWT_COOKIE_CSRF_PROTECT`` is on; a token without one raises
    :class:`JWTDecodeError` ``Missing claim: csrf``.
    """
    manager, cfg = jwt_context()

    def steps() -> Steps[str]:
        claims, _ = yield from manager.decode_steps(cfg, encoded_token)
        csrf = claims.get("csrf")
        if not isinstance(csrf, str):
            msg = "Missing claim: csrf"
            raise JWTDecodeError(msg)
        return csrf

    return cast(str, run_steps(steps()))


def get_unverified_jwt_headers(encoded_token: str) -> dict[str, Any]:
    """The JOSE header of a token, WITHOUT verifying it: do not trust the result."""
    return jwt.get_unverified_header(encoded_token)


def get_raw_jwt() -> dict[str, Any]:
    """The claims of the token of the current request, or ``{}`` when there is none."""
    claims: dict[str, Any] = getattr(g, "_jwt_extended_jwt", {})
    return claims


get_jwt = get_raw_jwt
"""flask-jwt-extended 4's name for :func:`get_raw_jwt`."""


def get_raw_jwt_header() -> dict[str, Any]:
    """The JOSE header of the current request's token, or ``{}``."""
    header: dict[str, Any] = getattr(g, "_jwt_extended_jwt_header", {})
    return header


def get_jwt_identity() -> Any:
    """The identity claim of the current request's token, or ``None``."""
    claims = get_raw_jwt()
    if not claims:
        return None
    return claims.get(current_config().identity_claim)


def get_jwt_claims() -> dict[str, Any]:
    """The user claims of the current request's token, or ``{}``."""
    claims = get_raw_jwt()
    if not claims:
        return {}
    key = current_config().user_claims_key
    user_claims: dict[str, Any] = claims.get(key, {})
    return user_claims


def get_current_user() -> Any:
    """The object the user loader returned for this request, or ``None``."""
    return getattr(g, "_jwt_extended_jwt_user", None)


current_user: Any = LocalProxy(get_current_user)
"""Proxy to :func:`get_current_user` for the current request."""
