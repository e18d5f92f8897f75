"""The API node's settings, read from environment variables only.

The node's own variables are declared in :class:`NodeVars` (``JWT_SECRET_KEY`` is
required).  Every other ``REVSYNC_*`` variable present is copied into ``app.config``
under its own name, so the keys declared in ``revsync.config.Settings`` work as
documented there.  The node sets
``REVSYNC_WAIT_FOR_READY`` to false unless told otherwise, so it starts serving at
once and /readyz answers 503 until its start-up backfill is done.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from revsync.config import DEFAULTS, SettingError, choice, declarations, read, setting
from services.common.logs import FORMATS

MIN_SECRET_BYTES = 32
MIN_ADMIN_TOKEN_CHARS = 16
MAX_LIFETIME_SECONDS = 100 * 365 * 24 * 3600
"""A token lifetime beyond a century is a typo (and beyond ~10^14 s, a crash)."""
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

ConfigError = SettingError
"""An environment variable is missing or invalid; the node must not start."""


def _secret(key: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        msg = (
            f"{key} is not set; set it to a random string of at least "
            f"{MIN_SECRET_BYTES} bytes, e.g. "
            "$(python -c 'import secrets; print(secrets.token_hex(32))')"
        )
        raise ConfigError(msg)
    if len(value.encode()) < MIN_SECRET_BYTES:
        msg = (
            f"{key} is {len(value.encode())} bytes; it must be at least "
            f"{MIN_SECRET_BYTES} bytes (RFC 7518 section 3.2) so tokens cannot be "
            "forged by guessing it"
        )
        raise ConfigError(msg)
    return value


def _lifetime(key: str, value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    raw = str(value).strip()
    try:
        seconds = int(raw)
    except ValueError:
        msg = f"{key} must be a whole number of seconds, got {value!r}"
        raise ConfigError(msg) from None
    if not 0 < seconds <= MAX_LIFETIME_SECONDS:
        msg = f"{key} must be > 0 and at most {MAX_LIFETIME_SECONDS} seconds, got {value!r}"
        raise ConfigError(msg)
    return timedelta(seconds=seconds)


def _admin_token(key: str, value: object) -> bytes | None:
    if not value:
        return None
    if not isinstance(value, str) or len(value) < MIN_ADMIN_TOKEN_CHARS:
        msg = f"{key} must be at least {MIN_ADMIN_TOKEN_CHARS} characters, or unset"
        raise ConfigError(msg)
    return value.encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeVars:
    """The API node's own environment variables; each field declares one."""

    secret_key: str = setting(
        "",
        _secret,
        "signing key of the tokens (HS256), at least 32 bytes",
        key="JWT_SECRET_KEY",
        shown="required",
    )
    access_expires: timedelta = setting(
        "900",
        _lifetime,
        "access token lifetime in seconds",
        key="JWT_ACCESS_TOKEN_EXPIRES",
        shown="`900`",
    )
    refresh_expires: timedelta = setting(
        "2592000",
        _lifetime,
        "refresh token lifetime in seconds",
        key="JWT_REFRESH_TOKEN_EXPIRES",
        shown="`2592000`",
    )
    admin_token: bytes | None = setting(
        None,
        _admin_token,
        "key of the /admin endpoints (`X-Admin-Token` header), at least 16 characters; "
        "unset: disabled",
    )
    log_level: str = setting(
        "warning",
        choice(*LOG_LEVELS),
        f"lowest level logged: {', '.join(LOG_LEVELS)}",
    )
    log_format: str = setting(
        "console",
        choice(*FORMATS),
        "`console`: one line of text per event; `json`: one JSON object per line "
        "(time, level, logger, event and its fields)",
    )


def env_vars(*declared: type) -> frozenset[str]:
    """The environment variables of ``declared`` settings classes and every REVSYNC key."""
    return frozenset({*DEFAULTS, *(d.key for cls in declared for d in declarations(cls))})


ENV_VARS: frozenset[str] = env_vars(NodeVars)
"""Every environment variable the API node reads (docker-compose.yml is checked against it)."""


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """What the API node was configured with."""

    config: dict[str, Any]
    """Keys for ``app.config``: ``JWT_*`` and every ``REVSYNC_*`` variable present."""
    admin_token: bytes | None
    log_level: str
    log_format: str = "console"
    env_seen: frozenset[str] = field(default_factory=frozenset)


def present(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables that are set to something: an empty one counts as unset."""
    return {key: value for key, value in environ.items() if value.strip()}


def from_env(environ: Mapping[str, str] | None = None) -> ApiSettings:
    """Read and check the node's environment; raise ConfigError with a one-line reason."""
    env = os.environ if environ is None else environ
    node = read(NodeVars, present(env))
    own = env_vars(NodeVars) - set(DEFAULTS)
    config: dict[str, Any] = {
        "JWT_SECRET_KEY": node.secret_key,
        "JWT_BLACKLIST_ENABLED": True,
        "JWT_BLACKLIST_TOKEN_CHECKS": ["access", "refresh"],
        "JWT_ACCESS_TOKEN_EXPIRES": node.access_expires,
        "JWT_REFRESH_TOKEN_EXPIRES": node.refresh_expires,
        "REVSYNC_WAIT_FOR_READY": "false",
        # Bodies here are a few hundred bytes; anything bigger is refused with 413.
        "MAX_CONTENT_LENGTH": 64 * 1024,
    }
    for key, value in present(env).items():  # an empty variable means the default
        if key.startswith("REVSYNC_") and key not in own:
            config[key] = value
    return ApiSettings(
        config=config,
        admin_token=node.admin_token,
        log_level=node.log_level,
        log_format=node.log_format,
        env_seen=frozenset(k for k in env if k in ENV_VARS),
    )
