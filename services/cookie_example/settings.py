"""The cookie example's settings: the API node's environment plus the cookie options.

Everything ``services.api.settings`` reads is read the same way (``JWT_SECRET_KEY``
required, ``JWT_*_TOKEN_EXPIRES``, ``REVSYNC_LOG_LEVEL``, and every ``REVSYNC_*``
variable copied into ``app.config``).  On top of that, the cookie options declared
in :class:`CookieVars` (the README's table of the services' variables comes from
those declarations).

The token locations and CSRF options are fixed by the example: tokens travel only
in cookies, the refresh cookie only to ``/auth/`` paths, and every POST, PUT, PATCH
and DELETE must echo the CSRF cookie in the ``X-CSRF-TOKEN`` header.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from revsync.config import boolean, read, setting
from services.api.settings import ApiSettings, ConfigError, env_vars, present
from services.api.settings import from_env as api_from_env

AUTH_PREFIX = "/auth"
"""Login, refresh and logout live under this path; the refresh cookie goes only there."""

_SAMESITE = {"strict": "Strict", "lax": "Lax", "none": "None"}


def _samesite(key: str, value: object) -> str:
    word = _SAMESITE.get(str(value).strip().lower())
    if word is None:
        msg = f"{key} must be Strict, Lax or None, got {value!r}"
        raise ConfigError(msg)
    return word


def _domain(key: str, value: object) -> str | None:
    return None if value is None else (str(value).strip() or None)


@dataclass(frozen=True, slots=True, kw_only=True)
class CookieVars:
    """The cookie example's environment variables; each field declares one."""

    secure: bool = setting(
        True,
        boolean,
        "send the cookies over HTTPS only; turn it off only for plain-HTTP tests",
        key="JWT_COOKIE_SECURE",
    )
    samesite: str = setting(
        "Lax",
        _samesite,
        "`Strict`, `Lax` or `None` (`None` needs `JWT_COOKIE_SECURE`)",
        key="JWT_COOKIE_SAMESITE",
    )
    domain: str | None = setting(
        None,
        _domain,
        "the cookies' Domain attribute; unset: this host only",
        key="JWT_COOKIE_DOMAIN",
    )
    session: bool = setting(
        True,
        boolean,
        "`true`: cookies die with the browser session; `false`: kept a year",
        key="JWT_SESSION_COOKIE",
    )


ENV_VARS = env_vars(CookieVars)
"""The variables this example reads on top of the API node's."""


def from_env(environ: Mapping[str, str] | None = None) -> ApiSettings:
    """The API node's settings with the cookie example's ``JWT_*`` keys added."""
    env = os.environ if environ is None else environ
    settings = api_from_env(env)
    cookie = read(CookieVars, present(env))
    if cookie.samesite == "None" and not cookie.secure:
        msg = "JWT_COOKIE_SAMESITE=None needs JWT_COOKIE_SECURE=true (browsers drop the cookies)"
        raise ConfigError(msg)
    cookies: dict[str, Any] = {
        "JWT_TOKEN_LOCATION": ["cookies"],
        "JWT_COOKIE_SECURE": cookie.secure,
        "JWT_COOKIE_SAMESITE": cookie.samesite,
        "JWT_COOKIE_DOMAIN": cookie.domain,
        "JWT_SESSION_COOKIE": cookie.session,
        "JWT_ACCESS_COOKIE_PATH": "/",
        "JWT_REFRESH_COOKIE_PATH": f"{AUTH_PREFIX}/",
        "JWT_COOKIE_CSRF_PROTECT": True,
    }
    return ApiSettings(
        config={**settings.config, **cookies},
        admin_token=settings.admin_token,
        log_level=settings.log_level,
        log_format=settings.log_format,
        env_seen=settings.env_seen | frozenset(k for k in env if k in ENV_VARS),
    )
