"""Decorators protecting views, and the ``verify_*`` functions behind them.

Each decorator works bare (``@jwt_required``) and called (``@jwt_required()``).
The ``verify_*`` functions raise on failure; the app's error handlers, installed
by :meth:`JWTManager.init_app`, turn the exceptions into the original responses.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, overload

from quart import g, request
from quart.utils import run_sync

from revsync.jwt._steps import run_steps, settle
from revsync.jwt.config import EXEMPT_METHODS
from revsync.jwt.exceptions import (
    FreshTokenRequired,
    InvalidHeaderError,
    NoAuthorizationError,
    WrongTokenError,
)
from revsync.jwt.locations import find_token
from revsync.jwt.utils import jwt_context

F = TypeVar("F", bound=Callable[..., Any])


async def _verify(request_type: str, *, optional: bool = False, fresh: bool = False) -> None:
    if request.method in EXEMPT_METHODS:
        return
    manager, cfg = jwt_context()
    try:
        token, csrf_value = await find_token(cfg, request_type)
    except (NoAuthorizationError, InvalidHeaderError):
        if optional:
            return
        raise
    # The CSRF value is compared after decoding, so a token served from the verified
    # cache is checked exactly like a fresh one.
    claims, header = await settle(
        run_steps(manager.decode_steps(cfg, token, csrf_value=csrf_value))
    )
    if claims["type"] != request_type:
        msg = f"Only {request_type} tokens are allowed"
        raise WrongTokenError(msg)
    await manager.check_not_revoked(cfg, claims, header)
    g._jwt_extended_jwt = claims
    g._jwt_extended_jwt_header = header
    if fresh and not _is_fresh(claims["fresh"]):
        msg = "Fresh token required"
        raise FreshTokenRequired(msg)
    if request_type == "access":
        await manager.verify_user_claims(cfg, claims)
    await manager.load_user(claims[cfg.identity_claim])


def _is_fresh(fresh: Any) -> bool:
    if isinstance(fresh, bool):
        return fresh
    if isinstance(fresh, int | float):
        return fresh >= time.time()
    return False


async def verify_jwt_in_request(
    optional: bool = False, fresh: bool = False, refresh: bool = False
) -> None:
    """Require a valid access token (freshness not checked).

    The keywords are flask-jwt-extended 4's: ``refresh`` wants a refresh token,
    ``fresh`` a fresh access token, ``optional`` lets a request without one through.
    """
    await _verify("refresh" if refresh else "access", optional=optional, fresh=fresh)


async def verify_jwt_in_request_optional() -> None:
    """Check an access token if the request has one; let it through if it has none.

    A present but invalid, expired or revoked token is still refused.
    """
    await _verify("access", optional=True)


async def verify_fresh_jwt_in_request() -> None:
    """Require a valid and fresh access token."""
    await _verify("access", fresh=True)


async def verify_jwt_refresh_token_in_request() -> None:
    """Require a valid refresh token."""
    await _verify("refresh")


def _protect(view: F, request_type: str, optional: bool, fresh: bool) -> F:
    call = view if inspect.iscoroutinefunction(view) else run_sync(view)

    @wraps(view)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        await _verify(request_type, optional=optional, fresh=fresh)
        return await call(*args, **kwargs)

    return wrapper  # type: ignore[return-value]  # same call signature, now async


@overload
def jwt_required(fn: F, /) -> F: ...
@overload
def jwt_required(
    fn: None = None, /, *, optional: bool = False, fresh: bool = False, refresh: bool = False
) -> Callable[[F], F]: ...
def jwt_required(
    fn: F | None = None,
    /,
    *,
    optional: bool = False,
    fresh: bool = False,
    refresh: bool = False,
) -> F | Callable[[F], F]:
    """Protect a view: it runs only for a request with a valid access token.

    Bare or called; called, it takes flask-jwt-extended 4's keywords (see
    :func:`verify_jwt_in_request`).
    """
    request_type = "refresh" if refresh else "access"
    return _decorator(fn, request_type, optional=optional, fresh=fresh)


@overload
def jwt_optional(fn: F, /) -> F: ...
@overload
def jwt_optional(fn: None = None, /) -> Callable[[F], F]: ...
def jwt_optional(fn: F | None = None, /) -> F | Callable[[F], F]:
    """Run the view with or without an access token; a token present must be valid.

    Without one, :func:`get_jwt_identity` returns ``None`` in the view.
    """
    return _decorator(fn, "access", optional=True)


@overload
def fresh_jwt_required(fn: F, /) -> F: ...
@overload
def fresh_jwt_required(fn: None = None, /) -> Callable[[F], F]: ...
def fresh_jwt_required(fn: F | None = None, /) -> F | Callable[[F], F]:
    """Protect a view: it runs only for a request with a valid, fresh access token."""
    return _decorator(fn, "access", fresh=True)


@overload
def jwt_refresh_token_required(fn: F, /) -> F: ...
@overload
def jwt_refresh_token_required(fn: None = None, /) -> Callable[[F], F]: ...
def jwt_refresh_token_required(fn: F | None = None, /) -> F | Callable[[F], F]:
    """Protect a view: it runs only for a request with a valid refresh token."""
    return _decorator(fn, "refresh")


def _decorator(
    fn: F | None, request_type: str, *, optional: bool = False, fresh: bool = False
) -> F | Callable[[F], F]:
    def decorate(view: F) -> F:
        return _protect(view, request_type, optional, fresh)

    return decorate if fn is None else decorate(fn)
