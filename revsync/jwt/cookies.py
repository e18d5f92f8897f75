"""Setting and deleting the token cookies on a response, as quart-jwt-extended does.

The token cookie is ``HttpOnly`` (page scripts cannot read it); its CSRF companion
(``JWT_CSRF_IN_COOKIES``) is not, so the page can copy it into the
``X-CSRF-TOKEN`` header of the requests that need it.  Both take ``Secure``,
``Domain``, ``SameSite`` and ``Max-Age`` from the ``JWT_COOKIE_*`` and
``JWT_SESSION_COOKIE`` settings.
"""

from __future__ import annotations

from datetime import timedelta

from werkzeug.sansio.response import Response

from revsync.jwt.config import JWTConfig, current_config
from revsync.jwt.exceptions import JWTDecodeError
from revsync.jwt.tokens import read_unverified

MaxAge = int | timedelta | None


def set_access_cookies(
    response: Response, encoded_access_token: str, max_age: MaxAge = None
) -> None:
    """Set the access token cookie (and its CSRF cookie) on ``response``.

    ``max_age`` (seconds) overrides ``JWT_SESSION_COOKIE``.  Raises ``RuntimeWarning``
    when "cookies" is not in ``JWT_TOKEN_LOCATION``, as the original does.
    """
    _set(response, "set_access_cookies", "access", encoded_access_token, max_age)


def set_refresh_cookies(
    response: Response, encoded_refresh_token: str, max_age: MaxAge = None
) -> None:
    """Set the refresh token cookie (and its CSRF cookie) on ``response``."""
    _set(response, "set_refresh_cookies", "refresh", encoded_refresh_token, max_age)


def unset_jwt_cookies(response: Response) -> None:
    """Delete the access and refresh cookies (and their CSRF cookies)."""
    unset_access_cookies(response)
    unset_refresh_cookies(response)


def unset_access_cookies(response: Response) -> None:
    """Delete the access token cookie (and its CSRF cookie)."""
    _set(response, "unset_access_cookies", "access", None, None)


def unset_refresh_cookies(response: Response) -> None:
    """Delete the refresh token cookie (and its CSRF cookie)."""
    _set(response, "unset_refresh_cookies", "refresh", None, None)


def _cookie_config(caller: str) -> JWTConfig:
    cfg = current_config()
    if not cfg.jwt_in_cookies:
        msg = f"{caller}() called without 'JWT_TOKEN_LOCATION' configured to use cookies"
        raise RuntimeWarning(msg)
    return cfg


def _set(response: Response, caller: str, kind: str, token: str | None, max_age: MaxAge) -> None:
    """Set a ``kind`` token's cookie and its CSRF cookie, or expire both (``token`` None)."""
    cfg = _cookie_config(caller)
    places = cfg.places_for(kind)
    gone = token is None
    age = None if gone else (max_age or cfg.cookie_max_age)
    cookies = [(places.cookie_name, places.cookie_path, token or "", True)]
    if _csrf_cookies(cfg):
        csrf = "" if token is None else _csrf_claim(token)
        cookies.append((places.csrf_cookie_name, places.csrf_cookie_path, csrf, False))
    for name, path, value, httponly in cookies:
        _write(response, cfg, name, path, value, age, httponly=httponly, gone=gone)


def _csrf_cookies(cfg: JWTConfig) -> bool:
    return cfg.csrf_protect and cfg.csrf_in_cookies


def _csrf_claim(token: str) -> str:
    """The token's ``csrf`` claim, read without verifying the token.

    It is only a copy for the page's scripts: every request that carries the token
    verifies it, and compares this value with the verified claim.  Reading it
    unverified keeps this function synchronous whatever the decode key loader is.
    """
    csrf = read_unverified(token)[0].get("csrf")
    if not isinstance(csrf, str):
        msg = "Missing claim: csrf"
        raise JWTDecodeError(msg)
    return csrf


def _write(
    response: Response,
    cfg: JWTConfig,
    name: str,
    path: str,
    value: str,
    max_age: MaxAge,
    *,
    httponly: bool,
    gone: bool = False,
) -> None:
    response.set_cookie(
        name,
        value=value,
        max_age=max_age,
        expires=0 if gone else None,
        path=path,
        domain=cfg.cookie_domain,
        secure=cfg.cookie_secure,
        httponly=httponly,
        samesite=cfg.cookie_samesite,
    )
