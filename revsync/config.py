"""RevSync's settings: one declaration per ``REVSYNC_*`` key.

Each field of :class:`Settings` is a key's whole declaration: its name (the keyword
of ``RevSync(...)``; ``REVSYNC_`` + the name in capitals is the ``app.config`` key and
the services' environment variable), its type, its default, its parser and one line
of documentation.  Validation, the keywords ``RevSync`` accepts, the services'
environment parsing and the README's configuration table (checked by a test) are
all read from these declarations, so adding a setting is one field plus its use.

Values may arrive as strings ("5", "2.5", "true") from an environment.  Anything
invalid raises :class:`SettingError` naming the key, at start-up, never on the
request path.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

from revsync._logging import get_logger
from revsync._memory_bus import MEMORY_FORM, is_memory_url, memory_bus_name
from revsync._redis_topology import (
    CLUSTER_FORM,
    REDIS_OPTIONS,
    SENTINEL_FORM,
    TLS_OPTIONS,
    hash_tag,
    is_topology_url,
    parse_topology_url,
)
from revsync._urls import mask_url

logger = get_logger()
T = TypeVar("T")
FailMode = Literal["closed", "open"]
Mode = Literal["denylist", "allowlist"]
Parser = Callable[[str, Any], Any]

REDIS_SCHEMES = ("redis", "rediss", "unix")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
# Refresh tokens that never expire still need a bounded identity cut-off row.
NEVER_EXPIRES_TTL = 10 * 365 * 24 * 3600.0


class SettingError(ValueError, RuntimeError):
    """A setting is missing or invalid; the message names its key.

    A ValueError for RevSync's own keys, and a RuntimeError as quart-jwt-extended
    raises for a bad ``JWT_*`` key, so code written for either keeps catching it.
    """


# -- parsers: (key, raw value) -> value, or SettingError naming the key ----------------


def seconds(key: str, value: object, *, allow_zero: bool = False) -> float:
    """A positive number of seconds (a number, a numeric string or a timedelta)."""
    if isinstance(value, timedelta):
        number = value.total_seconds()
    elif isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            number = float(value)
        except (ValueError, OverflowError):  # OverflowError: an int beyond any float
            number = None
    else:
        number = None
    if number is None:
        msg = f"{key} must be a number of seconds, got {value!r}"
        raise SettingError(msg)
    if number != number or number in (float("inf"), float("-inf")):
        msg = f"{key} must be a finite number of seconds, got {value!r}"
        raise SettingError(msg)
    if number < 0 or (number == 0 and not allow_zero):
        msg = f"{key} must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}"
        raise SettingError(msg)
    return number


def seconds_or_zero(key: str, value: object) -> float:
    """A number of seconds that may be 0."""
    return seconds(key, value, allow_zero=True)


def boolean(key: str, value: object) -> bool:
    """True or False, or one of the words of TRUE_WORDS / FALSE_WORDS."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    msg = f"{key} must be true or false, got {value!r}"
    raise SettingError(msg)


def choice(*allowed: str) -> Parser:
    """A parser accepting one of ``allowed`` (case and surrounding blanks ignored)."""

    def parse(key: str, value: object) -> str:
        word = value.strip().lower() if isinstance(value, str) else value
        if word not in allowed:
            names = " or ".join(repr(a) for a in allowed)
            msg = f"{key} must be {names}, got {value!r}"
            raise SettingError(msg)
        return str(word)

    parse.__doc__ = f"one of {', '.join(allowed)}"
    return parse


fail_mode_word = choice("closed", "open")
mode_word = choice("denylist", "allowlist")


def optional(parser: Parser) -> Parser:
    """``parser``, letting None (unset) through."""

    def parse(key: str, value: object) -> Any:
        return None if value is None else parser(key, value)

    return parse


def name(key: str, value: object) -> str:
    """A non-empty string of at most 128 characters (a channel or a node name)."""
    if not isinstance(value, str) or not value or len(value) > 128:
        msg = f"{key} must be a non-empty string of at most 128 characters, got {value!r}"
        raise SettingError(msg)
    return value


def channel_name(key: str, value: object) -> str:
    """A channel's name: a name, and without ``}`` unless it has a Redis Cluster hash
    tag, so that each node's ping channel can share its slot (revsync._bus.ping_channel)."""
    channel = name(key, value)
    if "}" in channel and hash_tag(channel) is None:
        msg = (
            f"{key}={channel!r} has a '}}' but no Redis Cluster hash tag ({{...}} with "
            "something inside): the nodes' ping channels could not share its slot; "
            "drop the '}' or give it a hash tag"
        )
        raise SettingError(msg)
    return channel


def node_name(key: str, value: object) -> str | None:
    """A node's name; unset or empty means the default (hostname-pid)."""
    return None if value is None or value == "" else name(key, value)


def file_path(key: str, value: object) -> str | None:
    """A file a node may create and replace: its folder exists, and it is no folder
    itself.  Unset or empty: none."""
    if value is None or value == "":
        return None
    text = os.fspath(value) if isinstance(value, str | os.PathLike) else None
    if not isinstance(text, str) or not text.strip() or "\0" in text:
        msg = f"{key} must be a file path, got {value!r}"
        raise SettingError(msg)
    path = Path(text)
    if path.is_dir() or not path.parent.is_dir():
        what = "is a folder" if path.is_dir() else f"is in {str(path.parent)!r}, no folder"
        msg = f"{key}={str(path)!r} {what}: name a file in an existing folder"
        raise SettingError(msg)
    return str(path)


def event_key(key: str, value: object) -> bytes | None:
    """An HMAC key as bytes; an empty value means no key, as if unset."""
    if isinstance(value, str | bytes) and not value:
        return None
    if isinstance(value, str):
        return value.encode()
    if not isinstance(value, bytes):
        msg = f"{key} must be a string or bytes, got {type(value).__name__}"
        raise SettingError(msg)
    return value


def store_url(key: str, value: object) -> str:
    """A store URL; its scheme is checked when the store is built."""
    if not isinstance(value, str) or not value:
        msg = f"{key} must be a URL such as sqlite:///revsync.db, got {value!r}"
        raise SettingError(msg)
    return value


def validate_redis_url(url: object, key: str = "REVSYNC_REDIS_URL") -> str:
    """Check a bus URL's form (Redis, or memory://[name]) without connecting; return it."""
    if not isinstance(url, str) or not url:
        msg = f"{key} must be a bus URL such as redis://127.0.0.1:6379/0 or memory://, got {url!r}"
        raise SettingError(msg)
    if is_topology_url(url) or is_memory_url(url):  # Sentinel, Cluster, in process
        try:
            if is_memory_url(url):
                memory_bus_name(url, key)
            else:
                parse_topology_url(url, key)
        except ValueError as exc:
            raise SettingError(str(exc)) from None
        return url
    shown = mask_url(url)  # never a password in an error
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        msg = f"{key} is not a valid Redis URL ({exc}): {shown!r}"
        raise SettingError(msg) from None
    if parts.scheme not in REDIS_SCHEMES:
        msg = (
            f"{key} must start with redis://, rediss://, unix://, redis+sentinel://, "
            f"redis+cluster:// or memory://, got {shown!r} (example: redis://127.0.0.1:6379/0, "
            f"{SENTINEL_FORM}, {CLUSTER_FORM}, {MEMORY_FORM})"
        )
        raise SettingError(msg)
    if parts.scheme != "unix" and not parts.hostname:
        msg = f"{key} names no host: {shown!r} (example: redis://127.0.0.1:6379/0)"
        raise SettingError(msg)
    if port == 0:
        msg = f"{key} has an invalid port: {shown!r}"
        raise SettingError(msg)
    db = parts.path.lstrip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        msg = f"{key} must end with a database number (/0), got {shown!r}"
        raise SettingError(msg)
    names = {name for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    unknown = sorted(names - REDIS_OPTIONS - TLS_OPTIONS - _PLAIN_OPTIONS)
    if unknown:
        msg = (
            f"{key} has unknown query parameters {unknown} (accepted: "
            f"{', '.join(sorted(REDIS_OPTIONS | _PLAIN_OPTIONS))}; with rediss:// "
            f"{', '.join(sorted(TLS_OPTIONS))})"
        )
        raise SettingError(msg)
    tls = sorted(names & TLS_OPTIONS)
    if tls and parts.scheme != "rediss":
        msg = f"{key} sets {tls} without TLS: use rediss://"
        raise SettingError(msg)
    return url


_PLAIN_OPTIONS = frozenset({"db", "username", "password"})
"""Query parameters redis-py reads from a plain redis:// URL besides its options."""
_UNVERIFIED = {"ssl_cert_reqs": ("none", "optional"), "ssl_check_hostname": ("false", "0", "no")}


def redis_url(key: str, value: object) -> str:
    """A bus URL: Redis (``redis://``, ``rediss://``, ``unix://``, Sentinel or Cluster),
    or ``memory://[name]`` in process.  TLS without verification is logged loudly."""
    url = validate_redis_url(value, key)
    for name, given in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if given.strip().lower() in _UNVERIFIED.get(name, ()):
            logger.warning(
                "revsync.tls_unverified",
                setting=key,
                option=f"{name}={given}",
                risk="a man in the middle can read and forge bus messages",
            )
    return url


# -- declarations ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Declaration:
    """One setting: where it is read from, how it is parsed, what it means."""

    key: str
    """The ``app.config`` key and environment variable."""
    keyword: str
    """The keyword argument (and Settings field) of the same setting."""
    default: Any
    parse: Parser
    doc: str
    shown: str
    """The default as the README's table shows it."""
    group: str


def setting(
    default: Any,
    parse: Parser,
    doc: str,
    *,
    shown: str | None = None,
    group: str = "core",
    key: str | None = None,
) -> Any:
    """Declare a setting as a dataclass field (see :func:`declarations`).

    ``key`` defaults to ``REVSYNC_`` + the field's name in capitals; ``shown`` to the
    default as written in a README (`` `5` s`` for seconds).
    """
    meta = {"parse": parse, "doc": doc, "shown": shown, "group": group, "key": key}
    return dataclasses.field(default=default, metadata={"revsync": meta})


def declarations(cls: type) -> Iterator[Declaration]:
    """The settings declared with :func:`setting` on the dataclass ``cls``, in order."""
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("revsync")
        if meta is None:
            continue
        yield Declaration(
            key=meta["key"] or f"REVSYNC_{f.name.upper()}",
            keyword=f.name,
            default=f.default,
            parse=meta["parse"],
            doc=meta["doc"],
            shown=meta["shown"] or _shown(f.default, meta["parse"]),
            group=meta["group"],
        )


def _shown(default: object, parse: Parser) -> str:
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if parse in (seconds, seconds_or_zero) and isinstance(default, float | int):
        return f"`{default:g}` s"
    return f"`{default}`"


def markdown_table(cls: type, group: str = "core") -> str:
    """The README's table of one group of settings, from their declarations."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    rows += [f"| `{d.key}` | {d.shown} | {d.doc} |" for d in declarations(cls) if d.group == group]
    return "\n".join(rows)


def read(
    cls: type[T],
    config: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    **derived: Any,
) -> T:
    """Build ``cls`` from keyword ``overrides`` (None counts as not given), else
    ``config``, else each declaration's default, parsed and checked."""
    overrides = overrides or {}
    values = dict(derived)
    for d in declarations(cls):
        given = overrides.get(d.keyword)
        raw = config.get(d.key, d.default) if given is None else given
        values[d.keyword] = d.parse(d.key, raw)
    return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Validated settings of one RevSync instance; each field declares its key."""

    redis_url: str = setting(
        "redis://127.0.0.1:6379/0",
        redis_url,
        "the bus (`redis://`, `rediss://` for TLS, `unix://`), or `memory://` for one "
        "process (`memory://name`: shared by name in the process)",
    )
    store_url: str = setting(
        "sqlite:///revsync.db",
        store_url,
        "the durable store: `sqlite:///path`, `postgresql://...` "
        "(`pip install revsync[postgres]`), `redis://...?prefix=name` "
        "(`revsync[hiredis]` makes its start-up read faster)",
    )
    channel: str = setting(
        "revsync",
        channel_name,
        "pub/sub channel; each node's heartbeats go on a channel of its own beside it: "
        "`channel:ping:<node>` if the channel has a Redis Cluster hash tag, else "
        "`{channel}:ping:<node>`",
    )
    event_key: bytes | None = setting(
        None,
        optional(event_key),
        "HMAC-SHA256 key; when set, unsigned or wrongly signed messages are dropped",
    )
    resync_interval: float = setting(
        5.0, seconds, "anti-entropy: catch up from the store this often"
    )
    heartbeat_interval: float = setting(
        1.0, seconds, "each node publishes a ping and expects it back"
    )
    max_staleness: float = setting(
        30.0,
        seconds,
        "longest time without confirmed sync before the failure policy applies",
    )
    fail_mode: FailMode = setting(
        "closed",
        fail_mode_word,
        "`closed`: while stale, answer every token 503 (not 401) and report not ready; "
        "`open`: accept, log loudly, stay ready",
    )
    startup_timeout: float = setting(30.0, seconds, "start-up backfill deadline")
    wait_for_ready: bool = setting(
        True,
        boolean,
        "block server start-up until backfilled (and fail it past the timeout); `false`: "
        "serve at once, answer every token 503 and report not ready until backfilled",
    )
    node_id: str = setting(
        None,
        node_name,
        "this node's name in events and logs",
        shown="`hostname-pid`",
    )
    leeway: float = setting(
        None,
        optional(seconds_or_zero),
        "seconds an entry outlives its token's `exp`; never below `JWT_DECODE_LEEWAY` "
        "(a start-up error)",
        shown="`JWT_DECODE_LEEWAY`",
    )
    cutoff_ttl: float = setting(
        None,
        optional(seconds),
        'how long a "log out everywhere" cut-off is kept; also the oldest token accepted '
        "(by `iat`), and creating a token that would live longer raises ValueError",
        shown="longest token lifetime",
    )
    prune_interval: float = setting(
        600.0,
        seconds,
        "each node deletes store rows of expired tokens about this often (jittered)",
    )
    checkpoint_path: str | None = setting(
        None,
        file_path,
        "a file where the node keeps a checkpoint of its set (the store's id, epoch and "
        "seq, checksummed), written every few minutes and at shutdown, so that a restart "
        "reads only what changed since; refused (the whole store is read) if the store "
        "does not confirm it",
    )
    log_identities: bool = setting(
        False,
        boolean,
        "log identities (user ids) at info level; `false`: only when debug lines are written",
    )
    track_tokens: bool = setting(
        False,
        boolean,
        "record every token issued through the registry's `issue_tokens`/`refresh` "
        "(identity, type, times, metadata)",
        group="registry",
    )
    mode: Mode = setting(
        "denylist",
        mode_word,
        "`allowlist`: a token whose jti is not in the registry is refused on every node",
        group="registry",
    )
    allowlist_wait: float = setting(
        1.0,
        seconds,
        "how long a node waits, in memory, for a just-issued token's registration to arrive",
        group="registry",
    )
    rotate_refresh: bool = setting(
        False,
        boolean,
        "each refresh retires the refresh token; presenting a retired one revokes its family",
        group="registry",
    )
    identity_claim: str = "identity"
    """Not a REVSYNC key: ``JWT_IDENTITY_CLAIM``, which "log out everywhere" matches."""

    def __repr__(self) -> str:
        """Every field, with URL passwords and the event key masked: settings end up
        in logs and tracebacks."""
        shown: dict[str, object] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        shown.update(redis_url=mask_url(self.redis_url), store_url=mask_url(self.store_url))
        if self.event_key is not None:
            shown["event_key"] = "***"
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in shown.items())})"


DEFAULTS: dict[str, Any] = {d.key: d.default for d in declarations(Settings)}
"""Every ``REVSYNC_*`` key with its default (None: unset, or derived at start-up)."""

KEYWORDS: dict[str, str] = {d.keyword: d.key for d in declarations(Settings)}
"""The keyword argument of ``RevSync(...)`` for each key."""


def resolve(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> Settings:
    """Settings from keyword ``overrides``, then ``config``, then the declarations'
    defaults; then the defaults that derive from other keys, and the checks between
    keys."""
    unknown = set(overrides) - set(KEYWORDS)
    if unknown:
        msg = f"unknown setting {sorted(unknown)[0]!r}; the settings are {', '.join(KEYWORDS)}"
        raise TypeError(msg)
    given = read(
        Settings,
        config,
        overrides,
        identity_claim=str(config.get("JWT_IDENTITY_CLAIM", "identity")),
    )
    _warn_unknown_keys(config)
    decode_leeway = _decode_leeway(config)
    settings = dataclasses.replace(
        given,
        node_id=given.node_id or f"{socket.gethostname()}-{os.getpid()}",
        leeway=decode_leeway if given.leeway is None else given.leeway,
        cutoff_ttl=_longest_lifetime(config) if given.cutoff_ttl is None else given.cutoff_ttl,
    )
    _check(settings, decode_leeway)
    return settings


RENAMED = {"REVSYNC_SUBJECT_TTL": "REVSYNC_CUTOFF_TTL"}
"""Keys of earlier development versions, and their names now."""


def _warn_unknown_keys(config: Mapping[str, Any]) -> None:
    """A renamed key is an error; a misspelt one would be ignored and its default used,
    so it is logged loudly with the key it probably meant."""
    for key in config:
        if key in RENAMED:
            msg = f"{key} is now called {RENAMED[key]}: rename it in your configuration"
            raise SettingError(msg)
        if not isinstance(key, str) or not key.startswith("REVSYNC_") or key in DEFAULTS:
            continue
        near = next(iter(difflib.get_close_matches(key, DEFAULTS, 1)), None)
        logger.warning("revsync.unknown_setting", key=key, did_you_mean=near)


def _check(s: Settings, decode_leeway: float) -> None:
    """The rules that tie one key to another."""
    if s.max_staleness < 2 * s.heartbeat_interval:
        msg = (
            f"REVSYNC_MAX_STALENESS ({s.max_staleness:g}s) must be at least twice "
            f"REVSYNC_HEARTBEAT_INTERVAL ({s.heartbeat_interval:g}s), or every node "
            f"would go stale"
        )
        raise SettingError(msg)
    if s.leeway < decode_leeway:
        # An entry dropped while the JWT layer still accepts its token forgets a revocation.
        msg = (
            f"REVSYNC_LEEWAY ({s.leeway:g}s) must be at least JWT_DECODE_LEEWAY "
            f"({decode_leeway:g}s): revocations would be dropped while their tokens are "
            f"still accepted"
        )
        raise SettingError(msg)
    if not s.track_tokens and (s.mode == "allowlist" or s.rotate_refresh):
        what = "REVSYNC_MODE=allowlist" if s.mode == "allowlist" else "REVSYNC_ROTATE_REFRESH"
        msg = f"{what} needs REVSYNC_TRACK_TOKENS=true"
        raise SettingError(msg)


def _decode_leeway(config: Mapping[str, Any]) -> float:
    try:
        return seconds_or_zero("JWT_DECODE_LEEWAY", config.get("JWT_DECODE_LEEWAY", 0) or 0)
    except SettingError:
        return 0.0  # the JWT layer reports its own bad values


def _longest_lifetime(config: Mapping[str, Any]) -> float:
    """The longest configured token lifetime: how long an identity cut-off must be kept."""
    lifetimes = [
        _jwt_lifetime(config.get("JWT_ACCESS_TOKEN_EXPIRES", timedelta(minutes=15))),
        _jwt_lifetime(config.get("JWT_REFRESH_TOKEN_EXPIRES", timedelta(days=30))),
    ]
    if None in lifetimes:
        return NEVER_EXPIRES_TTL
    return max(x for x in lifetimes if x is not None)


def _jwt_lifetime(value: object) -> float | None:
    """Seconds of a JWT_*_TOKEN_EXPIRES value; None when tokens never expire.

    A calendar lifetime (``dateutil.relativedelta``) counts as its longest span.
    """
    if value is False:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if is_calendar_delta(value):
        return longest_span(value)
    return None


# -- calendar lifetimes (dateutil.relativedelta, duck-typed: dateutil stays optional) --

# The first of each month over four years (a leap year among them) and the next day:
# every length a month or a year can have, and every weekday, as starting points.
_SPAN_STARTS = tuple(
    datetime(year, month, 1, tzinfo=UTC) + timedelta(days=extra)
    for year in range(2024, 2028)
    for month in range(1, 13)
    for extra in (0, 1)
)


def is_calendar_delta(value: object) -> bool:
    """Whether ``value`` is a lifetime added to a datetime (a relativedelta), not a
    timedelta, a number or a bool."""
    if isinstance(value, timedelta | int | float | str | bytes) or value is None:
        return False
    try:
        return isinstance(datetime.now(UTC) + value, datetime)  # type: ignore[operator]
    except (TypeError, ValueError, OverflowError):  # not a lifetime
        return False


def span_from(value: Any, start: float) -> float:
    """Seconds from the Unix time ``start`` to ``start + value`` (a timedelta or a
    calendar delta such as ``relativedelta(months=1)``: then it depends on ``start``)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    begin = datetime.fromtimestamp(start, UTC)
    end: datetime = begin + value
    return (end - begin).total_seconds()


def longest_span(value: Any) -> float:
    """The longest :func:`span_from` of ``value``, from now or any month's start."""
    now = datetime.now(UTC).timestamp()
    starts = (now, *(start.timestamp() for start in _SPAN_STARTS))
    return max(span_from(value, start) for start in starts)
