"""The cookie example's settings: the API node's environment plus the cookie options.

Everything ``services.api.settings`` reads is read the same way (``JWT_SECRET_KEY``
required, ``JWT_*_TOKEN_EXPIRES``, ``REVSYNC_LOG_LEVEL``, and every ``REVSYNC_*``
variable copied into ``app.config``).  On top of that, from the environment:

``JWT_COOKIE_SECURE``    send the cookies over HTTPS only: true (default) or false.
                         Keep it true in production; turn it off only for plain-HTTP
                         tests (browsers treat http://localhost as secure anyway).
``JWT_COOKIE_SAMESITE``  Strict, Lax (default) or None (None needs JWT_COOKIE_SECURE).
``JWT_COOKIE_DOMAIN``    the cookies' Domain attribute; unset: this host only.
``JWT_SESSION_COOKIE``   true (default): cookies die with the browser session; false:
                         they are kept for a year (the tokens inside still expire).

The token locations and CSRF options are fixed by the example: tokens travel only
in cookies, the refresh cookie only to ``/auth/`` paths, and every POST, PUT, PATCH
and DELETE must echo the CSRF cookie in the ``X-CSRF-TOKEN`` header.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from services.api.settings import ApiSettings, ConfigError, from_env

AUTH_PREFIX = "/auth"
"""Login, refresh and logout live under this path; the refresh cookie goes only there."""

COOKIE_VARS = {
    "JWT_COOKIE_SECURE": "true or false (default true)",
    "JWT_COOKIE_SAMESITE": "Strict, Lax or None (default Lax)",
    "JWT_COOKIE_DOMAIN": "Domain attribute of the cookies (default: unset, this host only)",
    "JWT_SESSION_COOKIE": "true or false (default true)",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_SAMESITE = {"strict": "Strict", "lax": "Lax", "none": "None"}


def _flag(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    msg = f"{key} must be true or false, got {env[key]!r}"
    raise ConfigError(msg)


def from_environ(environ: Mapping[str, str] | None = None) -> ApiSettings:
    """The API node's settings with the cookie example's ``JWT_*`` keys added."""
    env = os.environ if environ is None else environ
    settings = from_env(env)
    secure = _flag(env, "JWT_COOKIE_SECURE", True)
    samesite_raw = env.get("JWT_COOKIE_SAMESITE", "").strip() or "Lax"
    samesite = _SAMESITE.get(samesite_raw.lower())
    if samesite is None:
        msg = f"JWT_COOKIE_SAMESITE must be Strict, Lax or None, got {samesite_raw!r}"
        raise ConfigError(msg)
    if samesite == "None" and not secure:
        msg = "JWT_COOKIE_SAMESITE=None needs JWT_COOKIE_SECURE=true (browsers drop the cookies)"
        raise ConfigError(msg)
    cookies: dict[str, Any] = {
        "JWT_TOKEN_LOCATION": ["cookies"],
        "JWT_COOKIE_SECURE": secure,
        "JWT_COOKIE_SAMESITE": samesite,
        "JWT_COOKIE_DOMAIN": env.get("JWT_COOKIE_DOMAIN", "").strip() or None,
        "JWT_SESSION_COOKIE": _flag(env, "JWT_SESSION_COOKIE", True),
        "JWT_ACCESS_COOKIE_PATH": "/",
        "JWT_REFRESH_COOKIE_PATH": f"{AUTH_PREFIX}/",
        "JWT_COOKIE_CSRF_PROTECT": True,
    }
    return ApiSettings(
        config={**settings.config, **cookies},
        admin_token=settings.admin_token,
        log_level=settings.log_level,
        env_seen=settings.env_seen | frozenset(k for k in env if k in COOKIE_VARS),
    )
