"""RevSync's settings: defaults, parsing and validation of ``REVSYNC_*`` keys.

Every setting can come from a keyword argument, from ``app.config``, or (for the
services) from an environment variable copied into ``app.config``, so values may
arrive as strings: "5", "2.5", "true".  Anything invalid raises ``ValueError``
naming the key, at start-up, never on the request path.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from revsync.redis_topology import (
    CLUSTER_FORM,
    SENTINEL_FORM,
    is_topology_url,
    parse_topology_url,
)

DEFAULTS: dict[str, Any] = {
    "REVSYNC_REDIS_URL": "redis://127.0.0.1:6379/0",
    "REVSYNC_STORE_URL": "sqlite:///revsync.db",
    "REVSYNC_CHANNEL": "revsync",
    "REVSYNC_EVENT_KEY": None,
    "REVSYNC_RESYNC_INTERVAL": 5.0,
    "REVSYNC_MAX_STALENESS": 30.0,
    "REVSYNC_FAIL_MODE": "closed",
    "REVSYNC_STARTUP_TIMEOUT": 30.0,
    "REVSYNC_HEARTBEAT_INTERVAL": 1.0,
    "REVSYNC_WAIT_FOR_READY": True,
    "REVSYNC_NODE_ID": None,
    "REVSYNC_LEEWAY": None,
    "REVSYNC_SUBJECT_TTL": None,
    "REVSYNC_PRUNE_INTERVAL": 600.0,
}

# The keyword argument of RevSync that each key can also be given as.
KEYWORDS: dict[str, str] = {key.removeprefix("REVSYNC_").lower(): key for key in DEFAULTS}

REDIS_SCHEMES = ("redis", "rediss", "unix")
FailMode = Literal["closed", "open"]
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
# Refresh tokens that never expire still need a bounded subject cut-off row.
NEVER_EXPIRES_TTL = 10 * 365 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings of one RevSync instance."""

    redis_url: str
    store_url: str
    channel: str
    event_key: bytes | None
    resync_interval: float
    max_staleness: float
    fail_mode: FailMode
    startup_timeout: float
    heartbeat_interval: float
    wait_for_ready: bool
    node_id: str
    leeway: float
    subject_ttl: float
    identity_claim: str
    prune_interval: float = 600.0


def _seconds(key: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        msg = f"{key} must be a number of seconds, got {value!r}"
        raise ValueError(msg)
    elif isinstance(value, int | float | str):
        try:
            seconds = float(value)
        except ValueError:
            msg = f"{key} must be a number of seconds, got {value!r}"
            raise ValueError(msg) from None
    else:
        msg = f"{key} must be a number of seconds, got {value!r}"
        raise ValueError(msg)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        msg = f"{key} must be a finite number of seconds, got {value!r}"
        raise ValueError(msg)
    if seconds < 0 or (seconds == 0 and not allow_zero):
        msg = f"{key} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}"
        raise ValueError(msg)
    return seconds


def _bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    msg = f"{key} must be true or false, got {value!r}"
    raise ValueError(msg)


def validate_redis_url(url: object, key: str = "REVSYNC_REDIS_URL") -> str:
    """Check a Redis URL's form without connecting; return it."""
    if not isinstance(url, str) or not url:
        msg = f"{key} must be a Redis URL such as redis://127.0.0.1:6379/0, got {url!r}"
        raise ValueError(msg)
    if is_topology_url(url):  # redis+sentinel:// or redis+cluster://
        parse_topology_url(url, key)
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        msg = f"{key} is not a valid Redis URL ({exc}): {url!r}"
        raise ValueError(msg) from None
    if parts.scheme not in REDIS_SCHEMES:
        msg = (
            f"{key} must start with redis://, rediss://, unix://, redis+sentinel:// or "
            f"redis+cluster://, got {url!r} (example: redis://127.0.0.1:6379/0, "
            f"{SENTINEL_FORM}, {CLUSTER_FORM})"
        )
        raise ValueError(msg)
    if parts.scheme != "unix" and not parts.hostname:
        msg = f"{key} names no host: {url!r} (example: redis://127.0.0.1:6379/0)"
        raise ValueError(msg)
    if port == 0:
        msg = f"{key} has an invalid port: {url!r}"
        raise ValueError(msg)
    db = parts.path.lstrip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        msg = f"{key} must end with a database number (/0), got {url!r}"
        raise ValueError(msg)
    return url


def _jwt_lifetime(value: object) -> float | None:
    """Seconds of a JWT_*_TOKEN_EXPIRES value; None when tokens never expire."""
    if value is False:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def resolve(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> Settings:
    """Build Settings from keyword overrides, then ``config``, then DEFAULTS."""

    def get(key: str) -> Any:
        keyword = key.removeprefix("REVSYNC_").lower()
        if overrides.get(keyword) is not None:
            return overrides[keyword]
        return config.get(key, DEFAULTS[key])

    channel = get("REVSYNC_CHANNEL")
    if not isinstance(channel, str) or not channel or len(channel) > 128:
        msg = (
            f"REVSYNC_CHANNEL must be a non-empty string of at most 128 characters, got {channel!r}"
        )
        raise ValueError(msg)

    event_key = get("REVSYNC_EVENT_KEY")
    if isinstance(event_key, str | bytes) and not event_key:
        event_key = None  # an empty variable means "no key", as if unset
    if isinstance(event_key, str):
        event_key = event_key.encode()
    if event_key is not None and not isinstance(event_key, bytes):
        msg = f"REVSYNC_EVENT_KEY must be a string or bytes, got {type(event_key).__name__}"
        raise ValueError(msg)

    fail_mode = get("REVSYNC_FAIL_MODE")
    if isinstance(fail_mode, str):
        fail_mode = fail_mode.strip().lower()
    if fail_mode not in ("closed", "open"):
        msg = f"REVSYNC_FAIL_MODE must be 'closed' or 'open', got {fail_mode!r}"
        raise ValueError(msg)

    resync = _seconds("REVSYNC_RESYNC_INTERVAL", get("REVSYNC_RESYNC_INTERVAL"))
    heartbeat = _seconds("REVSYNC_HEARTBEAT_INTERVAL", get("REVSYNC_HEARTBEAT_INTERVAL"))
    staleness = _seconds("REVSYNC_MAX_STALENESS", get("REVSYNC_MAX_STALENESS"))
    if staleness < 2 * heartbeat:
        msg = (
            f"REVSYNC_MAX_STALENESS ({staleness:g}s) must be at least twice "
            f"REVSYNC_HEARTBEAT_INTERVAL ({heartbeat:g}s), or every node would go stale"
        )
        raise ValueError(msg)

    node_id = get("REVSYNC_NODE_ID") or f"{socket.gethostname()}-{os.getpid()}"
    if not isinstance(node_id, str) or len(node_id) > 128:
        msg = f"REVSYNC_NODE_ID must be a string of at most 128 characters, got {node_id!r}"
        raise ValueError(msg)

    try:
        raw_leeway = config.get("JWT_DECODE_LEEWAY", 0) or 0
        decode_leeway = _seconds("JWT_DECODE_LEEWAY", raw_leeway, allow_zero=True)
    except ValueError:
        decode_leeway = 0.0  # the JWT layer reports its own bad values
    leeway_value = get("REVSYNC_LEEWAY")
    leeway = _seconds(
        "REVSYNC_LEEWAY", decode_leeway if leeway_value is None else leeway_value, allow_zero=True
    )
    if leeway < decode_leeway:
        # An entry dropped while the JWT layer still accepts its token forgets a revocation.
        msg = (
            f"REVSYNC_LEEWAY ({leeway:g}s) must be at least JWT_DECODE_LEEWAY "
            f"({decode_leeway:g}s): revocations would be dropped while their tokens are "
            f"still accepted"
        )
        raise ValueError(msg)

    ttl_value = get("REVSYNC_SUBJECT_TTL")
    if ttl_value is None:
        lifetimes = [
            _jwt_lifetime(config.get("JWT_ACCESS_TOKEN_EXPIRES", timedelta(minutes=15))),
            _jwt_lifetime(config.get("JWT_REFRESH_TOKEN_EXPIRES", timedelta(days=30))),
        ]
        subject_ttl = (
            NEVER_EXPIRES_TTL if None in lifetimes else max(x for x in lifetimes if x is not None)
        )
    else:
        subject_ttl = _seconds("REVSYNC_SUBJECT_TTL", ttl_value)

    store_url = get("REVSYNC_STORE_URL")
    if not isinstance(store_url, str) or not store_url:
        msg = f"REVSYNC_STORE_URL must be a URL such as sqlite:///revsync.db, got {store_url!r}"
        raise ValueError(msg)

    return Settings(
        redis_url=validate_redis_url(get("REVSYNC_REDIS_URL")),
        store_url=store_url,
        channel=channel,
        event_key=event_key,
        resync_interval=resync,
        max_staleness=staleness,
        fail_mode=fail_mode,
        startup_timeout=_seconds("REVSYNC_STARTUP_TIMEOUT", get("REVSYNC_STARTUP_TIMEOUT")),
        heartbeat_interval=heartbeat,
        wait_for_ready=_bool("REVSYNC_WAIT_FOR_READY", get("REVSYNC_WAIT_FOR_READY")),
        node_id=node_id,
        leeway=leeway,
        subject_ttl=subject_ttl,
        identity_claim=str(config.get("JWT_IDENTITY_CLAIM", "identity")),
        prune_interval=_seconds("REVSYNC_PRUNE_INTERVAL", get("REVSYNC_PRUNE_INTERVAL")),
    )
