"""Configuration: the ``JWT_*`` keys, their defaults, and a cached per-app snapshot.

Settings live in ``app.config`` as in quart-jwt-extended; a bad one raises
``revsync.config.SettingError``, a RuntimeError as quart-jwt-extended raises.
Reading and validating some twenty keys on every request is needless work, so
:func:`config_for` turns them into a frozen :class:`JWTConfig` (keys already
parsed, option dicts already built) and caches it per app.  The cache is checked
against the current raw values on each call, so a test that changes ``app.config``
after start-up still sees its change.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from weakref import WeakKeyDictionary

from jwt.algorithms import get_default_algorithms, requires_cryptography
from quart import current_app

from revsync._logging import get_logger
from revsync.config import SettingError, is_calendar_delta

logger = get_logger()

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
    # Token in the query string (JWT_TOKEN_LOCATION "query_string").
    "JWT_QUERY_STRING_NAME": "jwt",
    # Token in a JSON body (JWT_TOKEN_LOCATION "json").
    "JWT_JSON_KEY": "access_token",
    "JWT_REFRESH_JSON_KEY": "refresh_token",
    # Token in cookies (JWT_TOKEN_LOCATION "cookies").
    "JWT_ACCESS_COOKIE_NAME": "access_token_cookie",
    "JWT_REFRESH_COOKIE_NAME": "refresh_token_cookie",
    "JWT_ACCESS_COOKIE_PATH": "/",
    "JWT_REFRESH_COOKIE_PATH": "/",
    "JWT_COOKIE_SECURE": False,
    "JWT_COOKIE_DOMAIN": None,
    "JWT_SESSION_COOKIE": True,
    "JWT_COOKIE_SAMESITE": None,
    # CSRF double submit, for tokens in cookies only.
    "JWT_COOKIE_CSRF_PROTECT": True,
    "JWT_CSRF_METHODS": ["POST", "PUT", "PATCH", "DELETE"],
    "JWT_ACCESS_CSRF_HEADER_NAME": "X-CSRF-TOKEN",
    "JWT_REFRESH_CSRF_HEADER_NAME": "X-CSRF-TOKEN",
    "JWT_CSRF_IN_COOKIES": True,
    "JWT_ACCESS_CSRF_COOKIE_NAME": "csrf_access_token",
    "JWT_REFRESH_CSRF_COOKIE_NAME": "csrf_refresh_token",
    "JWT_ACCESS_CSRF_COOKIE_PATH": "/",
    "JWT_REFRESH_CSRF_COOKIE_PATH": "/",
    "JWT_CSRF_CHECK_FORM": False,
    "JWT_ACCESS_CSRF_FIELD_NAME": "csrf_token",
    "JWT_REFRESH_CSRF_FIELD_NAME": "csrf_token",
}
"""Every ``JWT_*`` key with its default; ``init_app`` sets each one not already set."""

ALIASES = ("JWT_BLOCKLIST_ENABLED", "JWT_BLOCKLIST_TOKEN_CHECKS", "JWT_CSRF_HEADER_NAME")
"""Other names accepted: flask-jwt-extended 4's blocklist keys, and the deprecated
``JWT_CSRF_HEADER_NAME`` (one CSRF header name for both token types)."""

COOKIE_MAX_AGE = 31540000
"""Lifetime (seconds, about a year) of the cookies when ``JWT_SESSION_COOKIE`` is False."""

SAMESITE_VALUES = ("Strict", "Lax", "None")

MAX_LEEWAY_SECONDS = 365 * 24 * 3600.0
"""The longest ``JWT_DECODE_LEEWAY``: a longer one accepts every expired token, in
effect, and makes revocations be kept for as long (``REVSYNC_LEEWAY`` follows it)."""

MIN_HMAC_KEY_BYTES = 32
"""An HS* secret shorter than this is weak (RFC 7518 §3.2: at least the hash size)."""

KNOWN_LOCATIONS = ("headers", "cookies", "query_string", "json")
"""Token locations this layer can read; see ``locations.py``."""

TOKEN_TYPES = ("access", "refresh")

EXEMPT_METHODS = frozenset({"OPTIONS"})
"""Methods the view decorators let through without looking for a token."""

# Keys read only when their location is enabled; the others are always watched.
_LOCATION_KEYS: dict[str, tuple[str, ...]] = {
    "cookies": (
        *(k for k in DEFAULTS if "_COOKIE" in k or "_CSRF_" in k),
        "JWT_CSRF_HEADER_NAME",
    ),
    "query_string": ("JWT_QUERY_STRING_NAME",),
    "json": ("JWT_JSON_KEY", "JWT_REFRESH_JSON_KEY"),
}
_WATCHED = tuple(
    key
    for key in (*DEFAULTS, *ALIASES, "SECRET_KEY")
    if not any(key in keys for keys in _LOCATION_KEYS.values())
)
_ALGORITHMS = get_default_algorithms()

Expiry = timedelta | Any
"""A token lifetime: a timedelta, a calendar delta (``dateutil.relativedelta``, added
to the issue time), or ``False`` for "never expires"."""


@dataclass(frozen=True, slots=True)
class TokenPlaces:
    """Where one token type (access or refresh) travels outside the ``Authorization`` header."""

    cookie_name: str
    cookie_path: str
    csrf_header_name: str
    csrf_cookie_name: str
    csrf_cookie_path: str
    csrf_field_name: str
    json_key: str


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
    denylist_enabled: bool
    denylist_checks: frozenset[str]
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
    query_string_name: str
    access_places: TokenPlaces
    refresh_places: TokenPlaces
    cookie_secure: bool
    cookie_domain: str | None
    cookie_max_age: int | None
    """``None`` (a session cookie) unless ``JWT_SESSION_COOKIE`` is False."""
    cookie_samesite: str | None
    csrf_protect: bool
    """Tokens carry a ``csrf`` claim and cookie requests are checked: "cookies" is a
    token location and ``JWT_COOKIE_CSRF_PROTECT`` is set."""
    csrf_methods: frozenset[str]
    csrf_in_cookies: bool
    csrf_check_form: bool
    decode_options: dict[str, Any]
    """Options handed to PyJWT on every decode, built once."""
    verified: dict[str, tuple[str, str]] = field(default_factory=dict, compare=False, repr=False)
    """Tokens that passed every static check under this config: token -> (claims JSON,
    header JSON).  See ``tokens.decode_complete``; a new config starts a new cache."""

    def require_encode_key(self) -> Any:
        """The signing key, or a SettingError naming the missing setting."""
        if self.encode_key is None:
            raise SettingError(_missing_key_message(self.algorithm, "JWT_PRIVATE_KEY"))
        return self.encode_key

    def require_decode_key(self) -> Any:
        """The verification key, or a SettingError naming the missing setting."""
        if self.decode_key is None:
            raise SettingError(_missing_key_message(self.algorithm, "JWT_PUBLIC_KEY"))
        return self.decode_key

    def expires_for(self, kind: str) -> Expiry:
        """The configured lifetime of ``kind`` tokens."""
        return self.access_expires if kind == "access" else self.refresh_expires

    def places_for(self, kind: str) -> TokenPlaces:
        """Cookie, CSRF and JSON names of ``kind`` tokens."""
        return self.access_places if kind == "access" else self.refresh_places

    @property
    def jwt_in_cookies(self) -> bool:
        """Whether "cookies" is one of the token locations."""
        return "cookies" in self.token_locations


_cache: WeakKeyDictionary[Any, tuple[tuple[str, ...], tuple[Any, ...], JWTConfig]] = (
    WeakKeyDictionary()
)


def current_config() -> JWTConfig:
    """The :class:`JWTConfig` of ``current_app``."""
    return config_for(current_app._get_current_object())  # type: ignore[attr-defined]


def config_for(app: Any) -> JWTConfig:
    """The :class:`JWTConfig` of ``app`` (not a proxy), rebuilt when a watched key changed.

    The keys of a location that is not enabled (the cookie and CSRF keys of a
    headers-only app) are not watched: they change nothing until it is, and
    ``JWT_TOKEN_LOCATION`` itself is always watched.
    """
    raw_config = app.config
    cached = _cache.get(app)
    if cached is not None:
        keys, values, built = cached
        if tuple(map(raw_config.get, keys)) == values:
            return built
    built = build_config(raw_config)
    for check in getattr(app, "extensions", {}).get(_CHECKS_KEY, ()):
        check(built)  # before caching: a refused config is refused on every call
    keys = _WATCHED + tuple(k for loc in built.token_locations for k in _LOCATION_KEYS.get(loc, ()))
    # Copy mutable values so that an in-place edit of a list still counts as a change.
    frozen = tuple(
        v.copy() if isinstance(v, list | dict | set) else v for v in map(raw_config.get, keys)
    )
    _cache[app] = (keys, frozen, built)
    return built


_CHECKS_KEY = "revsync.jwt.config_checks"
"""``app.extensions`` key of the callables given to :func:`check_each_config`."""


def check_each_config(app: Any, check: Callable[[JWTConfig], None]) -> None:
    """Have ``check`` see every :class:`JWTConfig` built for ``app`` from now on, the
    next one included (the one cached now is dropped).  ``check`` raises SettingError
    to refuse one: the call that built it raises, at start-up or in the request that
    first sees the changed settings.  Costs nothing while the settings stay the same.
    """
    checks: list[Callable[[JWTConfig], None]] = app.extensions.setdefault(_CHECKS_KEY, [])
    if check not in checks:
        checks.append(check)
    _cache.pop(app, None)


def build_config(raw: Mapping[str, Any]) -> JWTConfig:
    """Parse and validate the ``JWT_*`` keys of ``raw`` into a :class:`JWTConfig`."""

    def get(key: str) -> Any:
        return raw.get(key, DEFAULTS[key])

    algorithm: str = get("JWT_ALGORITHM")
    if algorithm not in _ALGORITHMS or algorithm == "none":
        msg = f"JWT_ALGORITHM {algorithm!r} is not a supported signing algorithm"
        raise SettingError(msg)
    decode_algorithms = _decode_algorithms(get("JWT_DECODE_ALGORITHMS"), algorithm)

    if algorithm in requires_cryptography:
        encode_raw, decode_raw = get("JWT_PRIVATE_KEY"), get("JWT_PUBLIC_KEY")
    else:
        encode_raw = decode_raw = get("JWT_SECRET_KEY") or raw.get("SECRET_KEY")
    encode_key = _prepare_key(algorithm, (algorithm,), encode_raw, "encode")
    decode_key = _prepare_key(algorithm, decode_algorithms, decode_raw, "decode")

    enabled = _flag(get("JWT_BLACKLIST_ENABLED"), "JWT_BLACKLIST_ENABLED") or _flag(
        raw.get("JWT_BLOCKLIST_ENABLED"), "JWT_BLOCKLIST_ENABLED"
    )
    checks = raw.get("JWT_BLOCKLIST_TOKEN_CHECKS") or get("JWT_BLACKLIST_TOKEN_CHECKS")

    _flag(get("JWT_REFUSE_WEAK_KEYS"), "JWT_REFUSE_WEAK_KEYS")  # used by init_app
    header_name = get("JWT_HEADER_NAME")
    if not header_name:
        msg = "JWT_HEADER_NAME cannot be empty"
        raise SettingError(msg)
    header_name = _text(get, "JWT_HEADER_NAME")
    identity_claim, user_claims_key = _claim_names(get)

    locations = _locations(get("JWT_TOKEN_LOCATION"))
    csrf_protect = _flag(get("JWT_COOKIE_CSRF_PROTECT"), "JWT_COOKIE_CSRF_PROTECT")
    csrf_protect = csrf_protect and "cookies" in locations
    csrf_in_cookies = _flag(get("JWT_CSRF_IN_COOKIES"), "JWT_CSRF_IN_COOKIES")
    old_csrf_header = raw.get("JWT_CSRF_HEADER_NAME")
    if old_csrf_header:
        warnings.warn(
            "JWT_CSRF_HEADER_NAME is deprecated. Use JWT_ACCESS_CSRF_HEADER_NAME "
            "or JWT_REFRESH_CSRF_HEADER_NAME instead",
            DeprecationWarning,
            stacklevel=2,
        )
    access_places, refresh_places = (
        TokenPlaces(
            cookie_name=_text(get, f"JWT_{kind}_COOKIE_NAME"),
            cookie_path=_text(get, f"JWT_{kind}_COOKIE_PATH"),
            csrf_header_name=old_csrf_header or _text(get, f"JWT_{kind}_CSRF_HEADER_NAME"),
            csrf_cookie_name=_text(get, f"JWT_{kind}_CSRF_COOKIE_NAME"),
            csrf_cookie_path=_text(get, f"JWT_{kind}_CSRF_COOKIE_PATH"),
            csrf_field_name=_text(get, f"JWT_{kind}_CSRF_FIELD_NAME"),
            json_key=_text(get, "JWT_JSON_KEY" if kind == "ACCESS" else "JWT_REFRESH_JSON_KEY"),
        )
        for kind in ("ACCESS", "REFRESH")
    )
    if "cookies" in locations:
        _check_cookie_clashes(access_places, refresh_places, csrf_protect and csrf_in_cookies)

    return JWTConfig(
        algorithm=algorithm,
        decode_algorithms=decode_algorithms,
        encode_key=encode_key,
        decode_key=decode_key,
        access_expires=parse_expiry(get("JWT_ACCESS_TOKEN_EXPIRES"), "JWT_ACCESS_TOKEN_EXPIRES"),
        refresh_expires=parse_expiry(get("JWT_REFRESH_TOKEN_EXPIRES"), "JWT_REFRESH_TOKEN_EXPIRES"),
        denylist_enabled=enabled,
        denylist_checks=_name_set(checks, TOKEN_TYPES, "JWT_BLACKLIST_TOKEN_CHECKS"),
        token_locations=locations,
        header_name=header_name,
        header_type=_optional_text(get, "JWT_HEADER_TYPE") or "",
        identity_claim=identity_claim,
        user_claims_key=user_claims_key,
        claims_in_refresh_token=_flag(
            get("JWT_CLAIMS_IN_REFRESH_TOKEN"), "JWT_CLAIMS_IN_REFRESH_TOKEN"
        ),
        audience=_expected_values(get, "JWT_DECODE_AUDIENCE"),
        encode_issuer=_optional_text(get, "JWT_ENCODE_ISSUER"),
        decode_issuer=_expected_values(get, "JWT_DECODE_ISSUER"),
        leeway=_leeway(get("JWT_DECODE_LEEWAY")),
        error_msg_key=_text(get, "JWT_ERROR_MESSAGE_KEY"),
        query_string_name=_text(get, "JWT_QUERY_STRING_NAME"),
        access_places=access_places,
        refresh_places=refresh_places,
        cookie_secure=_flag(get("JWT_COOKIE_SECURE"), "JWT_COOKIE_SECURE"),
        cookie_domain=_optional_text(get, "JWT_COOKIE_DOMAIN") or None,
        cookie_max_age=(
            None if _flag(get("JWT_SESSION_COOKIE"), "JWT_SESSION_COOKIE") else COOKIE_MAX_AGE
        ),
        cookie_samesite=_samesite(get("JWT_COOKIE_SAMESITE")),
        csrf_protect=csrf_protect,
        csrf_methods=frozenset(
            m.upper() for m in _strings(get("JWT_CSRF_METHODS"), "JWT_CSRF_METHODS")
        ),
        csrf_in_cookies=csrf_in_cookies,
        csrf_check_form=_flag(get("JWT_CSRF_CHECK_FORM"), "JWT_CSRF_CHECK_FORM"),
        # sub is not ours to police: JWT_IDENTITY_CLAIM="sub" may hold any JSON value.
        # No claim is required of PyJWT: tokens minted elsewhere may carry only the
        # identity (tokens.py fills in quart-jwt-extended's defaults).
        decode_options={"verify_sub": False},
    )


def parse_expiry(value: Any, name: str) -> Expiry:
    """A lifetime setting as a timedelta or a calendar delta, or ``False`` ("never expires")."""
    if value is False:
        return False
    if type(value) is int:
        try:
            return timedelta(seconds=value)
        except OverflowError:
            msg = f"{name} is {value} seconds, beyond what a datetime.timedelta can hold"
            raise SettingError(msg) from None
    if isinstance(value, timedelta):
        return value
    if is_calendar_delta(value):
        return value  # a dateutil relativedelta: exp is the issue time plus it, by calendar
    msg = (
        f"{name} must be a datetime.timedelta, a dateutil relativedelta, an int of "
        f"seconds, or False; got {value!r}"
    )
    raise SettingError(msg)


def check_secret_strength(raw: Mapping[str, Any]) -> None:
    """Warn about (or, with ``JWT_REFUSE_WEAK_KEYS``, refuse) a short HS* secret."""
    algorithm = raw.get("JWT_ALGORITHM", DEFAULTS["JWT_ALGORITHM"])
    key = "JWT_SECRET_KEY" if raw.get("JWT_SECRET_KEY") else "SECRET_KEY"
    secret = raw.get(key)
    if algorithm in requires_cryptography or not secret:
        return
    if not isinstance(secret, str | bytes):
        msg = f"{key} must be a string or bytes; got a {type(secret).__name__}"
        raise SettingError(msg)
    size = len(secret.encode() if isinstance(secret, str) else secret)
    if size >= MIN_HMAC_KEY_BYTES:
        return
    if _flag(raw.get("JWT_REFUSE_WEAK_KEYS"), "JWT_REFUSE_WEAK_KEYS"):
        msg = (
            f"JWT_SECRET_KEY is {size} bytes long; {algorithm} needs at least "
            f"{MIN_HMAC_KEY_BYTES} random bytes (JWT_REFUSE_WEAK_KEYS is set)"
        )
        raise SettingError(msg)
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
        raise SettingError(msg) from exc


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


def _collection(value: Any, name: str) -> Sequence[Any] | Set[Any]:
    """A setting that takes one name or several: a lone string is a one-item tuple."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, Sequence | Set):
        msg = f"{name} must be a sequence or a set"
        raise SettingError(msg)
    return value


def _name_set(value: Any, allowed: tuple[str, ...], name: str) -> frozenset[str]:
    value = _collection(value, name)
    for item in value:
        if item not in allowed:
            msg = f"{name} must contain only {' or '.join(map(repr, allowed))}; got {item!r}"
            raise SettingError(msg)
    return frozenset(value)


_LOCATION_LIST = ", ".join(f'"{name}"' for name in KNOWN_LOCATIONS[:-1])
_LOCATION_CHOICES = f'{_LOCATION_LIST}, or "{KNOWN_LOCATIONS[-1]}"'


def _locations(value: Any) -> tuple[str, ...]:
    """JWT_TOKEN_LOCATION as a tuple, with quart-jwt-extended's error messages.

    A set has no order of its own, so its locations are tried in the order of
    :data:`KNOWN_LOCATIONS`; a sequence is tried in its own order.
    """
    value = _collection(value, "JWT_TOKEN_LOCATION")
    if not value:
        msg = f"JWT_TOKEN_LOCATION must contain at least one of {_LOCATION_CHOICES}"
        raise SettingError(msg)
    for item in value:
        if item not in KNOWN_LOCATIONS:
            msg = f"JWT_TOKEN_LOCATION can only contain {_LOCATION_CHOICES}; got {item!r}"
            raise SettingError(msg)
    if isinstance(value, Set):
        return tuple(name for name in KNOWN_LOCATIONS if name in value)
    return tuple(value)


RESERVED_CLAIMS = ("exp", "iat", "nbf", "jti", "iss", "aud", "type", "fresh", "csrf")
"""Claims this layer (or PyJWT) writes or interprets itself: neither the identity nor
the user claims may be stored under one of them."""


def _claim_names(get: Callable[[str], Any]) -> tuple[str, str]:
    """``JWT_IDENTITY_CLAIM`` and ``JWT_USER_CLAIMS``: two different names, neither of
    them a claim the layer writes itself (it would overwrite it, or be overwritten)."""
    names = (_text(get, "JWT_IDENTITY_CLAIM"), _text(get, "JWT_USER_CLAIMS"))
    for key, name in zip(("JWT_IDENTITY_CLAIM", "JWT_USER_CLAIMS"), names, strict=True):
        if name in RESERVED_CLAIMS:
            msg = (
                f"{key} must not be {name!r}: tokens carry their own {name!r} claim "
                f"(reserved: {', '.join(RESERVED_CLAIMS)})"
            )
            raise SettingError(msg)
    if names[0] == names[1]:
        msg = (
            f"JWT_IDENTITY_CLAIM and JWT_USER_CLAIMS are both {names[0]!r}: "
            "one would overwrite the other"
        )
        raise SettingError(msg)
    return names


def _decode_algorithms(value: Any, algorithm: str) -> tuple[str, ...]:
    """``JWT_DECODE_ALGORITHMS`` (one name or several) with ``JWT_ALGORITHM`` added."""
    names = _strings(value or (), "JWT_DECODE_ALGORITHMS")
    for name in names:
        if name == "none":
            msg = "JWT_DECODE_ALGORITHMS must not contain 'none'"
            raise SettingError(msg)
        if name not in _ALGORITHMS:
            msg = f"JWT_DECODE_ALGORITHMS contains {name!r}, not a supported algorithm"
            raise SettingError(msg)
    return names if algorithm in names else (*names, algorithm)


def _leeway(value: Any) -> float:
    """``JWT_DECODE_LEEWAY`` in seconds: a timedelta or a finite number, not negative."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        type(value) is bool
        or not isinstance(value, int | float)
        or not 0 <= value < math.inf
        or value > MAX_LEEWAY_SECONDS
    ):
        # nan or inf would accept every expired token; a negative one refuse every token.
        msg = (
            "JWT_DECODE_LEEWAY must be a timedelta or a number of seconds from 0 to "
            f"{MAX_LEEWAY_SECONDS:g} (a year); "
            f"got {value!r}"
        )
        raise SettingError(msg)
    return float(value)


def _expected_values(get: Callable[[str], Any], key: str) -> str | tuple[str, ...] | None:
    """``JWT_DECODE_AUDIENCE`` / ``JWT_DECODE_ISSUER``: None, one string, or several
    (PyJWT raises TypeError on every token for anything else)."""
    value = get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Sequence | Set) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    msg = f"{key} must be None, a string or a non-empty list of strings; got {value!r}"
    raise SettingError(msg)


def _flag(value: Any, key: str) -> bool:
    """An on/off setting: any value but a string, read for its truth as before.

    A string is refused: ``"false"`` or ``"0"`` from an environment variable would
    read as on, and quart-jwt-extended read it so (``JWT_COOKIE_SECURE = "False"``
    made secure cookies); parsing it now would silently turn such a setting around.
    """
    if isinstance(value, str | bytes):
        msg = (
            f"{key} must be True or False, not the string {value!r} (any non-empty "
            "string reads as True): parse it first, e.g. app.config.from_prefixed_env()"
        )
        raise SettingError(msg)
    return bool(value)


def _optional_text(get: Callable[[str], Any], key: str) -> str | None:
    """A setting that is None or a string."""
    value = get(key)
    if value is None or isinstance(value, str):
        return value
    msg = f"{key} must be None or a string; got {value!r}"
    raise SettingError(msg)


def _text(get: Callable[[str], Any], key: str) -> str:
    """A setting that must be a non-empty string (a cookie, header, field or key name)."""
    value = get(key)
    if not isinstance(value, str) or not value:
        msg = f"{key} must be a non-empty string; got {value!r}"
        raise SettingError(msg)
    return value


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence | Set) and all(isinstance(item, str) for item in value):
        return tuple(value)
    msg = f"{name} must be a sequence of strings; got {value!r}"
    raise SettingError(msg)


def _samesite(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value.title() in SAMESITE_VALUES:
        return value.title()
    msg = f"JWT_COOKIE_SAMESITE must be None or one of {', '.join(SAMESITE_VALUES)}; got {value!r}"
    raise SettingError(msg)


def _check_cookie_clashes(access: TokenPlaces, refresh: TokenPlaces, csrf_cookies: bool) -> None:
    """Refuse two of our cookies with the same name and path: one would overwrite the other."""
    cookies = [
        ("JWT_ACCESS_COOKIE_NAME", access.cookie_name, access.cookie_path),
        ("JWT_REFRESH_COOKIE_NAME", refresh.cookie_name, refresh.cookie_path),
    ]
    if csrf_cookies:
        cookies += [
            ("JWT_ACCESS_CSRF_COOKIE_NAME", access.csrf_cookie_name, access.csrf_cookie_path),
            ("JWT_REFRESH_CSRF_COOKIE_NAME", refresh.csrf_cookie_name, refresh.csrf_cookie_path),
        ]
    seen: dict[tuple[str, str], str] = {}
    for key, name, path in cookies:
        other = seen.setdefault((name, path), key)
        if other != key:
            msg = (
                f"{other} and {key} are both {name!r} with path {path!r}: "
                "one cookie would overwrite the other"
            )
            raise SettingError(msg)


class _Config:
    """quart-jwt-extended's ``config`` object: the current app's settings by its names.

    For code that did ``from quart_jwt_extended.config import config``.  Read-only;
    every property reads :func:`current_config` (so it needs an app context and sees
    the same parsed, validated values the layer uses).  The values are the parsed
    ones: ``token_location`` and ``decode_algorithms`` are tuples,
    ``csrf_request_methods``, ``blacklist_checks`` and ``exempt_methods`` frozensets
    (methods in capitals), ``leeway`` seconds as a float, ``encode_key`` and
    ``decode_key`` the keys as PyJWT takes them (a missing one raises the
    RuntimeError naming the setting, as before).
    """

    __slots__ = ()

    @property
    def is_asymmetric(self) -> bool:
        """Whether the algorithm signs with a private key (RS*, ES*, PS*, EdDSA)."""
        return current_config().algorithm in requires_cryptography

    @property
    def encode_key(self) -> Any:
        """The signing key."""
        return current_config().require_encode_key()

    @property
    def decode_key(self) -> Any:
        """The verification key."""
        return current_config().require_decode_key()

    @property
    def token_location(self) -> tuple[str, ...]:
        """``JWT_TOKEN_LOCATION``, in the order the locations are tried."""
        return current_config().token_locations

    @property
    def jwt_in_cookies(self) -> bool:
        """Whether "cookies" is a token location."""
        return "cookies" in current_config().token_locations

    @property
    def jwt_in_headers(self) -> bool:
        """Whether "headers" is a token location."""
        return "headers" in current_config().token_locations

    @property
    def jwt_in_query_string(self) -> bool:
        """Whether "query_string" is a token location."""
        return "query_string" in current_config().token_locations

    @property
    def jwt_in_json(self) -> bool:
        """Whether "json" is a token location."""
        return "json" in current_config().token_locations

    @property
    def header_name(self) -> str:
        """``JWT_HEADER_NAME``."""
        return current_config().header_name

    @property
    def header_type(self) -> str:
        """``JWT_HEADER_TYPE`` (``""`` for none)."""
        return current_config().header_type

    @property
    def query_string_name(self) -> str:
        """``JWT_QUERY_STRING_NAME``."""
        return current_config().query_string_name

    @property
    def access_cookie_name(self) -> str:
        """``JWT_ACCESS_COOKIE_NAME``."""
        return current_config().access_places.cookie_name

    @property
    def refresh_cookie_name(self) -> str:
        """``JWT_REFRESH_COOKIE_NAME``."""
        return current_config().refresh_places.cookie_name

    @property
    def access_cookie_path(self) -> str:
        """``JWT_ACCESS_COOKIE_PATH``."""
        return current_config().access_places.cookie_path

    @property
    def refresh_cookie_path(self) -> str:
        """``JWT_REFRESH_COOKIE_PATH``."""
        return current_config().refresh_places.cookie_path

    @property
    def cookie_secure(self) -> bool:
        """``JWT_COOKIE_SECURE``."""
        return current_config().cookie_secure

    @property
    def cookie_domain(self) -> str | None:
        """``JWT_COOKIE_DOMAIN``."""
        return current_config().cookie_domain

    @property
    def session_cookie(self) -> bool:
        """``JWT_SESSION_COOKIE``."""
        return current_config().cookie_max_age is None

    @property
    def cookie_samesite(self) -> str | None:
        """``JWT_COOKIE_SAMESITE`` (capitalised: ``Strict``, ``Lax``, ``None``) or None."""
        return current_config().cookie_samesite

    @property
    def cookie_max_age(self) -> int | None:
        """The cookies' ``Max-Age``: None for session cookies, else about a year."""
        return current_config().cookie_max_age

    @property
    def json_key(self) -> str:
        """``JWT_JSON_KEY``."""
        return current_config().access_places.json_key

    @property
    def refresh_json_key(self) -> str:
        """``JWT_REFRESH_JSON_KEY``."""
        return current_config().refresh_places.json_key

    @property
    def csrf_protect(self) -> bool:
        """Whether cookie requests are CSRF-checked ("cookies" and JWT_COOKIE_CSRF_PROTECT)."""
        return current_config().csrf_protect

    @property
    def csrf_request_methods(self) -> frozenset[str]:
        """``JWT_CSRF_METHODS``, in capitals."""
        return current_config().csrf_methods

    @property
    def csrf_in_cookies(self) -> bool:
        """``JWT_CSRF_IN_COOKIES``."""
        return current_config().csrf_in_cookies

    @property
    def csrf_check_form(self) -> bool:
        """``JWT_CSRF_CHECK_FORM``."""
        return current_config().csrf_check_form

    @property
    def access_csrf_cookie_name(self) -> str:
        """``JWT_ACCESS_CSRF_COOKIE_NAME``."""
        return current_config().access_places.csrf_cookie_name

    @property
    def refresh_csrf_cookie_name(self) -> str:
        """``JWT_REFRESH_CSRF_COOKIE_NAME``."""
        return current_config().refresh_places.csrf_cookie_name

    @property
    def access_csrf_cookie_path(self) -> str:
        """``JWT_ACCESS_CSRF_COOKIE_PATH``."""
        return current_config().access_places.csrf_cookie_path

    @property
    def refresh_csrf_cookie_path(self) -> str:
        """``JWT_REFRESH_CSRF_COOKIE_PATH``."""
        return current_config().refresh_places.csrf_cookie_path

    @property
    def access_csrf_header_name(self) -> str:
        """``JWT_ACCESS_CSRF_HEADER_NAME`` (or the deprecated ``JWT_CSRF_HEADER_NAME``)."""
        return current_config().access_places.csrf_header_name

    @property
    def refresh_csrf_header_name(self) -> str:
        """``JWT_REFRESH_CSRF_HEADER_NAME`` (or the deprecated ``JWT_CSRF_HEADER_NAME``)."""
        return current_config().refresh_places.csrf_header_name

    @property
    def access_csrf_field_name(self) -> str:
        """``JWT_ACCESS_CSRF_FIELD_NAME``."""
        return current_config().access_places.csrf_field_name

    @property
    def refresh_csrf_field_name(self) -> str:
        """``JWT_REFRESH_CSRF_FIELD_NAME``."""
        return current_config().refresh_places.csrf_field_name

    @property
    def access_expires(self) -> Expiry:
        """``JWT_ACCESS_TOKEN_EXPIRES``: a timedelta (an int becomes one), a calendar
        delta, or False."""
        return current_config().access_expires

    @property
    def refresh_expires(self) -> Expiry:
        """``JWT_REFRESH_TOKEN_EXPIRES``, as :attr:`access_expires`."""
        return current_config().refresh_expires

    @property
    def algorithm(self) -> str:
        """``JWT_ALGORITHM``."""
        return current_config().algorithm

    @property
    def decode_algorithms(self) -> tuple[str, ...]:
        """``JWT_DECODE_ALGORITHMS`` with ``JWT_ALGORITHM`` added when missing."""
        return current_config().decode_algorithms

    @property
    def blacklist_enabled(self) -> bool:
        """``JWT_BLACKLIST_ENABLED`` (or ``JWT_BLOCKLIST_ENABLED``)."""
        return current_config().denylist_enabled

    @property
    def blacklist_checks(self) -> frozenset[str]:
        """``JWT_BLACKLIST_TOKEN_CHECKS`` (or ``JWT_BLOCKLIST_TOKEN_CHECKS``)."""
        return current_config().denylist_checks

    @property
    def blacklist_access_tokens(self) -> bool:
        """Whether access tokens are checked against the denylist."""
        return "access" in current_config().denylist_checks

    @property
    def blacklist_refresh_tokens(self) -> bool:
        """Whether refresh tokens are checked against the denylist."""
        return "refresh" in current_config().denylist_checks

    @property
    def identity_claim_key(self) -> str:
        """``JWT_IDENTITY_CLAIM``."""
        return current_config().identity_claim

    @property
    def user_claims_key(self) -> str:
        """``JWT_USER_CLAIMS``."""
        return current_config().user_claims_key

    @property
    def user_claims_in_refresh_token(self) -> bool:
        """``JWT_CLAIMS_IN_REFRESH_TOKEN``."""
        return current_config().claims_in_refresh_token

    @property
    def exempt_methods(self) -> frozenset[str]:
        """Methods the decorators let through without a token: ``{"OPTIONS"}``."""
        return EXEMPT_METHODS

    @property
    def error_msg_key(self) -> str:
        """``JWT_ERROR_MESSAGE_KEY``."""
        return current_config().error_msg_key

    @property
    def audience(self) -> Any:
        """``JWT_DECODE_AUDIENCE``."""
        return current_config().audience

    @property
    def encode_issuer(self) -> str | None:
        """``JWT_ENCODE_ISSUER``."""
        return current_config().encode_issuer

    @property
    def decode_issuer(self) -> Any:
        """``JWT_DECODE_ISSUER``."""
        return current_config().decode_issuer

    @property
    def leeway(self) -> float:
        """``JWT_DECODE_LEEWAY`` in seconds."""
        return current_config().leeway


config = _Config()
"""quart-jwt-extended's read-only view of the current app's ``JWT_*`` settings."""
