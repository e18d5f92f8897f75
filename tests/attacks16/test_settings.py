"""Issue 16 attack 2: settings declared once (revsync/config.py ``Settings``) and the
services' environment parsed from declarations.  Junk must give a one-line error
naming the key: never a traceback, a silent default or a node started with a wrong
value.  An empty environment variable means "default" (the refactor's claim).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
from quart import Quart

from revsync import RevSync
from revsync.config import DEFAULTS, KEYWORDS, SettingError, resolve
from services.api import settings as api_settings
from services.cookie_example import settings as cookie_settings
from services.processes import API_APP, Node, free_port, run, running
from tests.services.conftest import base_env

SECONDS_KEYS = [
    "REVSYNC_RESYNC_INTERVAL",
    "REVSYNC_HEARTBEAT_INTERVAL",
    "REVSYNC_MAX_STALENESS",
    "REVSYNC_STARTUP_TIMEOUT",
    "REVSYNC_LEEWAY",
    "REVSYNC_CUTOFF_TTL",
    "REVSYNC_PRUNE_INTERVAL",
    "REVSYNC_ALLOWLIST_WAIT",
]
BOOL_KEYS = [
    "REVSYNC_WAIT_FOR_READY",
    "REVSYNC_TRACK_TOKENS",
    "REVSYNC_ROTATE_REFRESH",
    "REVSYNC_LOG_IDENTITIES",
]
WORD_KEYS = ["REVSYNC_FAIL_MODE", "REVSYNC_MODE"]
URL_KEYS = ["REVSYNC_REDIS_URL", "REVSYNC_STORE_URL"]
PATH_KEYS = ["REVSYNC_CHECKPOINT_PATH"]
NUMBER_JUNK: list[object] = [
    "",
    "   ",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "-1",
    "1e309",
    "true",
    "5s",
    "é",
    "٣",  # an Arabic-Indic digit: float() would take it, and it is not "-1"
    "x" * 100_000,
    b"5",
    float("nan"),
    float("inf"),
    -1,
    True,
    [5],
]


def test_declarations_cover_every_key_checked_here() -> None:
    named = {*SECONDS_KEYS, *BOOL_KEYS, *WORD_KEYS, *URL_KEYS, *PATH_KEYS}
    rest = {"REVSYNC_CHANNEL", "REVSYNC_EVENT_KEY", "REVSYNC_NODE_ID"}
    assert set(DEFAULTS) == named | rest


def _refused(key: str, value: object, overrides: bool = False) -> str:
    config = {} if overrides else {key: value}
    kwargs = {KEYWORDS_BY_KEY[key]: value} if overrides else {}
    with pytest.raises(SettingError) as info:
        resolve(config, kwargs)
    message = str(info.value)
    assert key in message, message
    assert "\n" not in message
    return message


KEYWORDS_BY_KEY = {key: keyword for keyword, key in KEYWORDS.items()}


@pytest.mark.parametrize("key", SECONDS_KEYS)
@pytest.mark.parametrize("value", NUMBER_JUNK, ids=repr)
@pytest.mark.parametrize("via", ["config", "keyword"])
def test_junk_seconds_are_refused_naming_the_key(key: str, value: object, via: str) -> None:
    if value == "٣":
        # float("٣") == 3.0: Python reads every Unicode decimal digit; accepted as 3 s.
        assert resolve({key: value}, {}) is not None
        return
    _refused(key, value, overrides=via == "keyword")


@pytest.mark.parametrize("key", ["REVSYNC_RESYNC_INTERVAL", "REVSYNC_LEEWAY"])  # all alike
@pytest.mark.parametrize("via", ["config", "keyword"])
def test_a_huge_integer_is_a_setting_error(key: str, via: str) -> None:
    # float(10**400) raises OverflowError, which seconds() does not catch.
    _refused(key, 10**400, overrides=via == "keyword")


@pytest.mark.parametrize("key", PATH_KEYS)
@pytest.mark.parametrize(
    "value", ["   ", "\0", "a\0b", "{folder}", "{folder}/missing/file", 5, True, [5], b"x"]
)
@pytest.mark.parametrize("via", ["config", "keyword"])
def test_junk_paths_are_refused_naming_the_key(
    key: str, value: object, via: str, tmp_path: Path
) -> None:
    if isinstance(value, str):
        value = value.format(folder=tmp_path)
    _refused(key, value, overrides=via == "keyword")


@pytest.mark.parametrize("key", BOOL_KEYS)
@pytest.mark.parametrize("value", ["maybe", "2", "nan", "tru", "é", b"true", 1, 0.0])
def test_junk_booleans_are_refused(key: str, value: object) -> None:
    _refused(key, value)


@pytest.mark.parametrize("value", ["", "   "])
def test_a_blank_wait_for_ready_is_not_silently_false(value: str) -> None:
    # REVSYNC_WAIT_FOR_READY defaults to True; "" and "   " are in FALSE_WORDS, so a
    # blank value in app.config turns start-up blocking off without a word.  Either
    # the default or an error naming the key would do; False is neither.
    settings = None
    with contextlib.suppress(SettingError):
        settings = resolve({"REVSYNC_WAIT_FOR_READY": value}, {})
    assert settings is None or settings.wait_for_ready is True, "blank gave False"


@pytest.mark.parametrize("key", WORD_KEYS)
@pytest.mark.parametrize("value", ["", " ", "close", "deny", "é", b"closed", 1])
def test_junk_words_are_refused(key: str, value: object) -> None:
    _refused(key, value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("REVSYNC_CHANNEL", ""),
        ("REVSYNC_CHANNEL", "c" * 129),
        ("REVSYNC_CHANNEL", b"revsync"),
        ("REVSYNC_NODE_ID", "n" * 129),
        ("REVSYNC_NODE_ID", 5),
        ("REVSYNC_EVENT_KEY", 5),
        ("REVSYNC_REDIS_URL", ""),
        ("REVSYNC_REDIS_URL", "http://x"),
        ("REVSYNC_REDIS_URL", "redis://:99999/0"),
        ("REVSYNC_REDIS_URL", "redis://h:0/0"),
        ("REVSYNC_REDIS_URL", "redis://h/db"),
        ("REVSYNC_REDIS_URL", b"redis://h/0"),
        ("REVSYNC_STORE_URL", ""),
        ("REVSYNC_STORE_URL", b"sqlite:///x.db"),
    ],
)
def test_junk_strings_are_refused(key: str, value: object) -> None:
    _refused(key, value)


@pytest.mark.parametrize("url", ["   ", "nan", "é", "x" * 10_000, "sqlite://", "ftp://h/x"])
def test_junk_store_urls_fail_at_init_naming_the_key(url: str) -> None:
    app = Quart(__name__)
    with pytest.raises(ValueError, match="REVSYNC_STORE_URL") as info:
        RevSync(app, store_url=url)
    assert "\n" not in str(info.value)


def test_an_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="subject_ttl"):
        RevSync(Quart(__name__), subject_ttl=60)
    with pytest.raises(TypeError, match="REVSYNC_LEEWAY"):  # a key is not a keyword
        RevSync(Quart(__name__), REVSYNC_LEEWAY=60)


def test_the_old_cutoff_key_is_not_silently_ignored() -> None:
    # REVSYNC_SUBJECT_TTL was renamed REVSYNC_CUTOFF_TTL in this release.  Left in a
    # config it is ignored without a word: the cut-off TTL falls back to the longest
    # token lifetime.  See test_ignoring_the_old_key_never_widens_acceptance for why
    # that fails closed; it still changes behaviour at an upgrade, silently.
    app = Quart(__name__)
    app.config.update(REVSYNC_SUBJECT_TTL=90 * 86400, JWT_SECRET_KEY="k" * 32)
    with pytest.raises(SettingError, match="REVSYNC_SUBJECT_TTL"):
        RevSync(app)


def test_the_old_key_is_refused_whatever_its_value() -> None:
    # Refused rather than ignored: no value of the old key can change how long tokens
    # are accepted, and the operator learns the new name at start-up.
    for value in (90 * 86400, 60, "", None):
        with pytest.raises(SettingError, match="REVSYNC_CUTOFF_TTL"):
            resolve({"REVSYNC_SUBJECT_TTL": value}, {})
    assert resolve({"REVSYNC_CUTOFF_TTL": 60}, {}).cutoff_ttl == 60


# -- the services' environment ------------------------------------------------------

SERVICES = [api_settings.from_env, cookie_settings.from_env]
SECRET = {"JWT_SECRET_KEY": "s" * 32}


@pytest.mark.parametrize("from_env", SERVICES, ids=["api", "cookie"])
@pytest.mark.parametrize(
    "key",
    # One key of each parser (every other key of the same parser behaves alike).
    ["REVSYNC_RESYNC_INTERVAL", "REVSYNC_CHANNEL", "REVSYNC_MODE", "REVSYNC_EVENT_KEY"],
)
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_revsync_variable_means_the_default(from_env, key: str, value: str) -> None:  # type: ignore[no-untyped-def]
    settings = resolve(from_env({**SECRET, key: value}).config, {})
    default = resolve(from_env(SECRET).config, {})
    field = KEYWORDS_BY_KEY[key]
    if field == "node_id":
        return  # hostname-pid either way
    assert getattr(settings, field) == getattr(default, field), (key, value)


@pytest.mark.parametrize("from_env", SERVICES, ids=["api", "cookie"])
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("JWT_ACCESS_TOKEN_EXPIRES", "nan"),
        ("JWT_ACCESS_TOKEN_EXPIRES", "1e309"),
        ("JWT_ACCESS_TOKEN_EXPIRES", "-1"),
        ("JWT_ACCESS_TOKEN_EXPIRES", "true"),
        ("JWT_ACCESS_TOKEN_EXPIRES", "1.5"),
        ("JWT_REFRESH_TOKEN_EXPIRES", "9" * 30),  # timedelta overflows
        ("JWT_REFRESH_TOKEN_EXPIRES", "é"),
        ("REVSYNC_ADMIN_TOKEN", "short"),
        ("REVSYNC_LOG_LEVEL", "loud"),
        ("REVSYNC_LOG_LEVEL", "é"),
        ("JWT_SECRET_KEY", "é" * 15),  # 30 bytes
    ],
)
def test_junk_service_variables_name_the_key(from_env, key: str, value: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SettingError) as info:
        from_env({**SECRET, key: value})
    assert key in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("JWT_COOKIE_SECURE", "maybe"),
        ("JWT_COOKIE_SECURE", "nan"),
        ("JWT_COOKIE_SAMESITE", "sometimes"),
        ("JWT_COOKIE_SAMESITE", "é"),
        ("JWT_SESSION_COOKIE", "2"),
    ],
)
def test_junk_cookie_variables_name_the_key(key: str, value: str) -> None:
    with pytest.raises(SettingError, match=key):
        cookie_settings.from_env({**SECRET, key: value})


# -- a real node process -------------------------------------------------------------

NODE_JUNK = [
    ("REVSYNC_RESYNC_INTERVAL", "nan"),
    ("REVSYNC_HEARTBEAT_INTERVAL", "1e309"),
    ("REVSYNC_MAX_STALENESS", "true"),
    ("REVSYNC_LEEWAY", "-1"),
    ("REVSYNC_CHANNEL", "c" * 200),
    ("REVSYNC_MODE", "é"),
    ("JWT_REFRESH_TOKEN_EXPIRES", "9" * 30),
    ("REVSYNC_STORE_URL", "x" * 5000),
]


def _node(redis_url: str, tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    full = base_env(redis_url, f"sqlite:///{tmp_path / 'x.db'}", **env)
    command = [sys.executable, "-m", "hypercorn", API_APP, "--bind", f"127.0.0.1:{free_port()}"]
    return run([*command, "--workers", "0"], env=full, timeout=30)


@pytest.mark.parametrize(("key", "value"), NODE_JUNK, ids=[k for k, _ in NODE_JUNK])
def test_a_node_refuses_junk_in_one_line(
    redis_url: str, tmp_path: Path, key: str, value: str
) -> None:
    proc = _node(redis_url, tmp_path, **{key: value})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1, proc.stderr[-2000:]
    assert key in lines[0], proc.stderr[-2000:]
    assert len(lines[0]) < 2000 or key == "REVSYNC_STORE_URL"


def test_a_node_with_an_empty_resync_interval_uses_the_default(
    redis_url: str, tmp_path: Path
) -> None:
    # services/api/settings.py: "an empty one counts as unset" holds for the node's own
    # variables (present()) but every REVSYNC_* variable is copied into app.config as is.
    env = base_env(redis_url, f"sqlite:///{tmp_path / 'x.db'}", REVSYNC_RESYNC_INTERVAL="")
    with running(Node("empty-var", env, tmp_path)) as (node,):
        node.wait_ready(timeout=20)
