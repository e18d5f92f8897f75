"""Configuration: the ``JWT_*`` keys, their defaults, and a cached per-app snapshot.

Settings live in ``app.config`` as in quart-jwt-extended.  Reading and validating
some twenty keys on every request is needless work, so :func:`config_for` turns them
into a frozen :class:`JWTConfig` (keys already parsed, option dicts already built)
and caches it per app.  The cache is checked against the current raw values on each
call, so a test that changes ``app.config`` after start-up still sees its change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal
from weakref import WeakKeyDictionary

import structlog
from jwt.algorithms import get_default_algorithms, requires_cryptography
from quart import current_app

logger = structlog.get_logger("revsync")

DEFAULTS: dict[str, Any] = {
    "JWT_TOKEN_LOCATION": ("headers",),
    "JWT_HEADER_NAME": "Authorization",
    "JWT_HEADER_TYPE": "Bearer",
    "JWT_ACCESS_TOKEN_EXPIRES": timedelta(minutes=15),
    "JWT_REFRESH_TOKEN_EXPIRES": timedelta(days=30),
    "JWT_ALGORITHM": "HS256",
    "JWT_DECODE_ALGORITHMS": None,
    "JWT_SECRET_KEY": None,
    "JWT_PRIVATE_KEY": None,
    "JWT_PUBLIC_KEY": None,
    "JWT_BLACKLIST_ENABLED": False,
    "JWT_BLACKLIST_TOKEN_CHECKS": ("access", "refresh"),
    "JWT_IDENTITY_CLAIM": "identity",
    "JWT_USER_CLAIMS": "user_claims",
    "JWT_CLAIMS_IN_REFRESH_TOKEN": False,
    "JWT_DECODE_AUDIENCE": None,
    "JWT_ENCODE_ISSUER": None,
    "JWT_DECODE_ISSUER": None,
    "JWT_DECODE_LEEWAY": 0,
    "JWT_ERROR_MESSAGE_KEY": "msg",
    "JWT_REFUSE_WEAK_KEYS": False,
}
"""Every ``JWT_*`` key with its default; ``init_app`` sets each one not already set."""

ALIASES = ("JWT_BLOCKLIST_ENABLED", "JWT_BLOCKLIST_TOKEN_CHECKS")
"""Modern names (flask-jwt-extended 4) accepted next to the blacklist keys."""

MIN_HMAC_KEY_BYTES = 32
"""An HS* secret shorter than this is weak (RFC 7518 §3.2: at least the hash size)."""

KNOWN_LOCATIONS = ("headers",)
"""Token locations this layer can read; see ``locations.py``."""

TOKEN_TYPES = ("access", "refresh")

_WATCHED = (*DEFAULTS, *ALIASES, "SECRET_KEY")
_ALGORITHMS = get_default_algorithms()

Expiry = timedelta | Literal[False]


@dataclass(frozen=True, slots=True)
class JWTConfig:
    """The parsed settings of one app.  Read-only; rebuilt when ``app.config`` changes."""

    algorithm: str
    decode_algorithms: tuple[str, ...]
    encode_key: Any
    """Prepared signing key, or ``None`` when not configured (error raised at use)."""
    decode_key: Any
    """Prepared verification key, or ``None`` when not configured."""
    access_expires: Expiry
    refresh_expires: Expiry
    blacklist_enabled: bool
    blacklist_checks: frozenset[str]
    token_locations: tuple[str, ...]
    header_name: str
    header_type: str
    identity_claim: str
    user_claims_key: str
    claims_in_refresh_token: bool
    audience: Any
    encode_issuer: str | None
    decode_issuer: Any
    leeway: float
    error_msg_key: str
    decode_options: dict[str, Any]
    """Options handed to PyJWT on every decode, built once."""
    verified: dict[str, tuple[str, str]] = field(default_factory=dict, compare=False, repr=False)
    """Tokens that passed every static check under this config: token -> (claims JSON,
    header JSON).  See ``tokens.decode_complete``; a new config starts a new cache."""

    def require_encode_key(self) -> Any:
        """The signing key, or a ``RuntimeError`` naming the missing setting."""
        if self.encode_key is None:
            raise RuntimeError(_missing_key_message(self.algorithm, "JWT_PRIVATE_KEY"))
        return self.encode_key

    def require_decode_key(self) -> Any:
        """The verification key, or a ``RuntimeError`` naming the missing setting."""
        if self.decode_key is None:
            raise RuntimeError(_missing_key_message(self.algorithm, "JWT_PUBLIC_KEY"))
        return self.decode_key

    def expires_for(self, kind: str) -> Expiry:
        """The configured lifetime of ``kind`` tokens."""
        return self.access_expires if kind == "access" else self.refresh_expires


_cache: WeakKeyDictionary[Any, tuple[tuple[Any, ...], JWTConfig]] = WeakKeyDictionary()


def current_config() -> JWTConfig:
    """The :class:`JWTConfig` of ``current_app``."""
    return config_for(current_app._get_current_object())  # type: ignore[attr-defined]


def config_for(app: Any) -> JWTConfig:
    """The :class:`JWTConfig` of ``app`` (not a proxy), rebuilt when a watched key changed."""
    raw_config = app.config
    raw = tuple(map(raw_config.get, _WATCHED))
    cached = _cache.get(app)
    if cached is not None and cached[0] == raw:
        return cached[1]
    built = build_config(raw_config)
    # Copy mutable values so that an in-place edit of a list still counts as a change.
    frozen = tuple(v.copy() if isinstance(v, list | dict | set) else v for v in raw)
    _cache[app] = (frozen, built)
    return built


def build_config(raw: Mapping[str, Any]) -> JWTConfig:
    """Parse and validate the ``JWT_*`` keys of ``raw`` into a :class:`JWTConfig`."""

    def get(key: str) -> Any:
        return raw.get(key, DEFAULTS[key])

    algorithm: str = get("JWT_ALGORITHM")
    if algorithm not in _ALGORITHMS or algorithm == "none":
        msg = f"JWT_ALGORITHM {algorithm!r} is not a supported signing algorithm"
        raise RuntimeError(msg)
    decode_algorithms = tuple(get("JWT_DECODE_ALGORITHMS") or ())
    if algorithm not in decode_algorithms:
        decode_algorithms = (*decode_algorithms, algorithm)
    if "none" in decode_algorithms:
        msg = "JWT_DECODE_ALGORITHMS must not contain 'none'"
        raise RuntimeError(msg)

    if algorithm in requires_cryptography:
        encode_raw, decode_raw = get("JWT_PRIVATE_KEY"), get("JWT_PUBLIC_KEY")
    else:
        encode_raw = decode_raw = get("JWT_SECRET_KEY") or raw.get("SECRET_KEY")
    encode_key = _prepare_key(algorithm, (algorithm,), encode_raw, "encode")
    decode_key = _prepare_key(algorithm, decode_algorithms, decode_raw, "decode")

    enabled = bool(get("JWT_BLACKLIST_ENABLED")) or bool(raw.get("JWT_BLOCKLIST_ENABLED"))
    checks = raw.get("JWT_BLOCKLIST_TOKEN_CHECKS") or get("JWT_BLACKLIST_TOKEN_CHECKS")

    header_name = get("JWT_HEADER_NAME")
    if not header_name:
        msg = "JWT_HEADER_NAME cannot be empty"
        raise RuntimeError(msg)

    leeway = get("JWT_DECODE_LEEWAY")
    if isinstance(leeway, timedelta):
        leeway = leeway.total_seconds()

    return JWTConfig(
        algorithm=algorithm,
        decode_algorithms=decode_algorithms,
        encode_key=encode_key,
        decode_key=decode_key,
        access_expires=parse_expiry(get("JWT_ACCESS_TOKEN_EXPIRES"), "JWT_ACCESS_TOKEN_EXPIRES"),
        refresh_expires=parse_expiry(get("JWT_REFRESH_TOKEN_EXPIRES"), "JWT_REFRESH_TOKEN_EXPIRES"),
        blacklist_enabled=enabled,
        blacklist_checks=_name_set(checks, TOKEN_TYPES, "JWT_BLACKLIST_TOKEN_CHECKS"),
        token_locations=_locations(get("JWT_TOKEN_LOCATION")),
        header_name=header_name,
        header_type=get("JWT_HEADER_TYPE") or "",
        identity_claim=get("JWT_IDENTITY_CLAIM"),
        user_claims_key=get("JWT_USER_CLAIMS"),
        claims_in_refresh_token=bool(get("JWT_CLAIMS_IN_REFRESH_TOKEN")),
        audience=get("JWT_DECODE_AUDIENCE"),
        encode_issuer=get("JWT_ENCODE_ISSUER"),
        decode_issuer=get("JWT_DECODE_ISSUER"),
        leeway=float(leeway),
        error_msg_key=get("JWT_ERROR_MESSAGE_KEY"),
        # exp is checked per token type after decoding: it may be configured away.
        # sub is not ours to police: JWT_IDENTITY_CLAIM="sub" may hold any JSON value.
        decode_options={"require": ["iat", "jti", "type"], "verify_sub": False},
    )


def parse_expiry(value: Any, name: str) -> Expiry:
    """A lifetime setting as a timedelta, or ``False`` for "never expires"."""
    if value is False:
        return False
    if type(value) is int:
        return timedelta(seconds=value)
    if isinstance(value, timedelta):
        return value
    msg = f"{name} must be a datetime.timedelta, an int of seconds, or False; got {value!r}"
    raise RuntimeError(msg)


def check_secret_strength(raw: Mapping[str, Any]) -> None:
    """Warn about (or, with ``JWT_REFUSE_WEAK_KEYS``, refuse) a short HS* secret."""
    algorithm = raw.get("JWT_ALGORITHM", DEFAULTS["JWT_ALGORITHM"])
    secret = raw.get("JWT_SECRET_KEY") or raw.get("SECRET_KEY")
    if algorithm in requires_cryptography or not secret:
        return
    size = len(secret.encode() if isinstance(secret, str) else secret)
    if size >= MIN_HMAC_KEY_BYTES:
        return
    if raw.get("JWT_REFUSE_WEAK_KEYS"):
        msg = (
            f"JWT_SECRET_KEY is {size} bytes long; {algorithm} needs at least "
            f"{MIN_HMAC_KEY_BYTES} random bytes (JWT_REFUSE_WEAK_KEYS is set)"
        )
        raise RuntimeError(msg)
    logger.warning(
        "revsync.weak_jwt_key",
        setting="JWT_SECRET_KEY",
        algorithm=algorithm,
        key_bytes=size,
        minimum_bytes=MIN_HMAC_KEY_BYTES,
        advice="anyone who guesses a short secret can forge tokens; use 32+ random bytes",
    )


def _prepare_key(algorithm: str, algorithms: Sequence[str], key: Any, use: str) -> Any:
    """Parse a key once (PEM parsing is slow) when every algorithm reads it the same way."""
    if not key:
        return None
    kind = type(_ALGORITHMS[algorithm])
    if any(type(_ALGORITHMS.get(name)) is not kind for name in algorithms):
        return key  # mixed families: let PyJWT interpret the key per token
    try:
        return _ALGORITHMS[algorithm].prepare_key(key)
    except Exception as exc:
        setting = (
            "JWT_SECRET_KEY"
            if algorithm not in requires_cryptography
            else ("JWT_PRIVATE_KEY" if use == "encode" else "JWT_PUBLIC_KEY")
        )
        msg = f"{setting} is not a valid key for {algorithm}: {exc}"
        raise RuntimeError(msg) from exc


def _missing_key_message(algorithm: str, asymmetric_setting: str) -> str:
    if algorithm in requires_cryptography:
        return (
            f"{asymmetric_setting} must be set to use asymmetric cryptography "
            f'algorithm "{algorithm}"'
        )
    return (
        f"JWT_SECRET_KEY or quart SECRET_KEY must be set when using symmetric "
        f'algorithm "{algorithm}"'
    )


def _name_set(value: Any, allowed: tuple[str, ...], name: str) -> frozenset[str]:
    if isinstance(value, str):
        value = (value,)
    elif not isinstance(value, Sequence | Set):
        msg = f"{name} must be a sequence or a set"
        raise RuntimeError(msg)
    for item in value:
        if item not in allowed:
            msg = f"{name} must contain only {' or '.join(map(repr, allowed))}; got {item!r}"
            raise RuntimeError(msg)
    return frozenset(value)


def _locations(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    elif not isinstance(value, Sequence | Set) or not value:
        msg = f"JWT_TOKEN_LOCATION must be a non-empty sequence of {KNOWN_LOCATIONS}"
        raise RuntimeError(msg)
    for item in value:
        if item not in KNOWN_LOCATIONS:
            msg = f"JWT_TOKEN_LOCATION can only contain {', '.join(KNOWN_LOCATIONS)}; got {item!r}"
            raise RuntimeError(msg)
    return tuple(value)
