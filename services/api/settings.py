"""The API node's settings, read from environment variables only.

``JWT_SECRET_KEY`` is required (at least 32 bytes).  Every ``REVSYNC_*`` variable
present is copied into ``app.config`` under its own name, so the keys of
``revsync.config.DEFAULTS`` work as documented there.  The node sets
``REVSYNC_WAIT_FOR_READY`` to false unless told otherwise, so it starts serving at
once and /readyz answers 503 until its start-up backfill is done.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from revsync.config import DEFAULTS

MIN_SECRET_BYTES = 32
MIN_ADMIN_TOKEN_CHARS = 16
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

API_ONLY_VARS = {
    "JWT_SECRET_KEY": "signing key of the tokens (HS256), at least 32 bytes; required",
    "JWT_ACCESS_TOKEN_EXPIRES": "access token lifetime in seconds (default 900)",
    "JWT_REFRESH_TOKEN_EXPIRES": "refresh token lifetime in seconds (default 2592000)",
    "REVSYNC_ADMIN_TOKEN": "key of the /admin endpoints (X-Admin-Token header); unset: disabled",
    "REVSYNC_LOG_LEVEL": "lowest level logged: debug, info, warning (default), error",
}
ENV_VARS: frozenset[str] = frozenset({*API_ONLY_VARS, *DEFAULTS})
"""Every environment variable the API node reads (docker-compose.yml is checked against it)."""


class ConfigError(ValueError):
    """An environment variable is missing or invalid; the node must not start."""


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """What the API node was configured with."""

    config: dict[str, Any]
    """Keys for ``app.config``: ``JWT_*`` and every ``REVSYNC_*`` variable present."""
    admin_token: bytes | None
    log_level: str
    env_seen: frozenset[str] = field(default_factory=frozenset)


def _lifetime(environ: Mapping[str, str], key: str, default: timedelta) -> timedelta:
    raw = environ.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        seconds = int(raw)
    except ValueError:
        msg = f"{key} must be a whole number of seconds, got {raw!r}"
        raise ConfigError(msg) from None
    if seconds <= 0:
        msg = f"{key} must be > 0 seconds, got {raw!r}"
        raise ConfigError(msg)
    return timedelta(seconds=seconds)


def from_env(environ: Mapping[str, str] | None = None) -> ApiSettings:
    """Read and check the node's environment; raise ConfigError with a one-line reason."""
    env = os.environ if environ is None else environ
    secret = env.get("JWT_SECRET_KEY", "")
    if not secret:
        msg = (
            "JWT_SECRET_KEY is not set; set it to a random string of at least "
            f"{MIN_SECRET_BYTES} bytes, e.g. "
            "$(python -c 'import secrets; print(secrets.token_hex(32))')"
        )
        raise ConfigError(msg)
    if len(secret.encode()) < MIN_SECRET_BYTES:
        msg = (
            f"JWT_SECRET_KEY is {len(secret.encode())} bytes; it must be at least "
            f"{MIN_SECRET_BYTES} bytes (RFC 7518 section 3.2) so tokens cannot be "
            "forged by guessing it"
        )
        raise ConfigError(msg)

    admin = env.get("REVSYNC_ADMIN_TOKEN") or None
    if admin is not None and len(admin) < MIN_ADMIN_TOKEN_CHARS:
        msg = f"REVSYNC_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_CHARS} characters, or unset"
        raise ConfigError(msg)

    log_level = env.get("REVSYNC_LOG_LEVEL", "warning").strip().lower()
    if log_level not in LOG_LEVELS:
        msg = f"REVSYNC_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}"
        raise ConfigError(msg)

    config: dict[str, Any] = {
        "JWT_SECRET_KEY": secret,
        "JWT_BLACKLIST_ENABLED": True,
        "JWT_BLACKLIST_TOKEN_CHECKS": ["access", "refresh"],
        "JWT_ACCESS_TOKEN_EXPIRES": _lifetime(
            env, "JWT_ACCESS_TOKEN_EXPIRES", timedelta(minutes=15)
        ),
        "JWT_REFRESH_TOKEN_EXPIRES": _lifetime(
            env, "JWT_REFRESH_TOKEN_EXPIRES", timedelta(days=30)
        ),
        "REVSYNC_WAIT_FOR_READY": "false",
        # Bodies here are a few hundred bytes; anything bigger is refused with 413.
        "MAX_CONTENT_LENGTH": 64 * 1024,
    }
    for key, value in env.items():
        if key.startswith("REVSYNC_") and key not in API_ONLY_VARS:
            config[key] = value
    return ApiSettings(
        config=config,
        admin_token=None if admin is None else admin.encode(),
        log_level=log_level,
        env_seen=frozenset(k for k in env if k in ENV_VARS),
    )
