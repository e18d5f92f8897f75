"""One declaration per setting: the README's tables, RevSync's keywords, the services'
environment and validation all come from ``revsync.config``'s declarations."""

from __future__ import annotations

import dataclasses
import inspect
import tempfile
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from revsync import RevSync
from revsync.config import (
    DEFAULTS,
    KEYWORDS,
    SettingError,
    Settings,
    boolean,
    declarations,
    markdown_table,
    read,
    resolve,
    seconds,
    setting,
)
from services.api.settings import ENV_VARS, NodeVars, from_env
from services.cookie_example.settings import CookieVars
from services.cookie_example.settings import from_env as cookie_from_env

README = (Path(__file__).parents[2] / "README.md").read_text()
SECRET = "s" * 40


@pytest.mark.parametrize(
    ("declared", "group"),
    [(Settings, "core"), (Settings, "registry"), (NodeVars, "core"), (CookieVars, "core")],
)
def test_readme_tables_are_the_declarations(declared: type, group: str) -> None:
    table = markdown_table(declared, group)
    assert table.count("\n") >= 3
    assert table in README, f"README's table differs from the declarations:\n{table}"


def test_every_key_is_declared_once_with_a_doc_line() -> None:
    keys = [d.key for cls in (Settings, NodeVars, CookieVars) for d in declarations(cls)]
    assert len(keys) == len(set(keys))
    for d in declarations(Settings):
        assert d.key == f"REVSYNC_{d.keyword.upper()}"
        assert d.doc
        assert "\n" not in d.doc
        assert d.shown
    assert set(DEFAULTS) == {d.key for d in declarations(Settings)}
    assert {d.keyword: d.key for d in declarations(Settings)} == KEYWORDS
    # The derived field is not a key.
    assert "REVSYNC_IDENTITY_CLAIM" not in DEFAULTS


def test_every_keyword_reaches_its_setting() -> None:
    # A value given as a keyword wins over app.config, for every declared setting.
    values: dict[str, Any] = {
        "redis_url": "redis://10.0.0.1:6379/2",
        "store_url": "sqlite:///elsewhere.db",
        "channel": "other",
        "event_key": "k",
        "resync_interval": 7,
        "heartbeat_interval": 2,
        "max_staleness": 9,
        "fail_mode": "open",
        "startup_timeout": 3,
        "wait_for_ready": False,
        "node_id": "n1",
        "leeway": 4,
        "cutoff_ttl": 50,
        "prune_interval": 60,
        "log_identities": True,
        "track_tokens": True,
        "mode": "allowlist",
        "allowlist_wait": 0.5,
        "rotate_refresh": True,
        "checkpoint_path": str(Path(tempfile.gettempdir()) / "node.checkpoint"),
    }
    assert set(values) == set(KEYWORDS)
    settings = resolve({"REVSYNC_CHANNEL": "from-config"}, values)
    parsed = {k: getattr(settings, k) for k in values}
    assert parsed == {**values, "event_key": b"k"}


def test_app_config_and_environment_strings() -> None:
    settings = resolve(
        {
            "REVSYNC_RESYNC_INTERVAL": "2.5",
            "REVSYNC_WAIT_FOR_READY": "off",
            "REVSYNC_MODE": " Denylist",
        },
        {},
    )
    assert (settings.resync_interval, settings.wait_for_ready, settings.mode) == (
        2.5,
        False,
        "denylist",
    )


def test_revsync_refuses_an_unknown_keyword() -> None:
    with pytest.raises(TypeError, match=r"'max_stalenes'.*max_staleness"):
        RevSync(max_stalenes=5)


def test_revsync_reads_its_keywords() -> None:
    app = Quart(__name__)
    ext = RevSync(app, max_staleness=12, channel="kw")
    assert (ext.settings.max_staleness, ext.settings.channel) == (12, "kw")


def test_one_error_type_for_a_bad_setting() -> None:
    assert issubclass(SettingError, ValueError)
    assert issubclass(SettingError, RuntimeError)
    with pytest.raises(SettingError, match="REVSYNC_FAIL_MODE"):
        resolve({"REVSYNC_FAIL_MODE": "sideways"}, {})
    with pytest.raises(SettingError, match="REVSYNC_LOG_LEVEL"):
        from_env({"JWT_SECRET_KEY": SECRET, "REVSYNC_LOG_LEVEL": "loud"})
    with pytest.raises(SettingError, match="JWT_COOKIE_SECURE"):
        cookie_from_env({"JWT_SECRET_KEY": SECRET, "JWT_COOKIE_SECURE": "maybe"})


@pytest.mark.parametrize("word", ["0", "false", "no", "off", "FALSE", " Off "])
def test_services_read_booleans_with_the_library_words(word: str) -> None:
    settings = cookie_from_env(
        {"JWT_SECRET_KEY": SECRET, "JWT_COOKIE_SECURE": word, "JWT_SESSION_COOKIE": word}
    )
    assert settings.config["JWT_COOKIE_SECURE"] is False
    assert settings.config["JWT_SESSION_COOKIE"] is False


def test_an_empty_variable_means_its_default() -> None:
    settings = cookie_from_env(
        {"JWT_SECRET_KEY": SECRET, "JWT_COOKIE_SECURE": "", "REVSYNC_ADMIN_TOKEN": ""}
    )
    assert settings.config["JWT_COOKIE_SECURE"] is True
    assert settings.admin_token is None


def test_node_reads_exactly_its_declared_variables() -> None:
    assert {*DEFAULTS, *(d.key for d in declarations(NodeVars))} == ENV_VARS
    settings = from_env({"JWT_SECRET_KEY": SECRET, "REVSYNC_ADMIN_TOKEN": "a" * 16})
    # Its own variables are consumed, not passed on to RevSync as unknown keys.
    assert "REVSYNC_ADMIN_TOKEN" not in settings.config
    assert settings.admin_token == b"a" * 16


def test_a_new_setting_is_one_declaration() -> None:
    # What adding a setting takes: one field.  It is then read from keywords,
    # app.config (strings included), its default, and shows in the table.
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Extra:
        batch_pause: float = setting(0.5, seconds, "pause between two batches")
        verbose: bool = setting(False, boolean, "say more")

    assert read(Extra, {}) == Extra(batch_pause=0.5, verbose=False)
    assert read(Extra, {"REVSYNC_BATCH_PAUSE": "2", "REVSYNC_VERBOSE": "yes"}) == Extra(
        batch_pause=2.0, verbose=True
    )
    assert read(Extra, {"REVSYNC_BATCH_PAUSE": "2"}, {"batch_pause": 3}).batch_pause == 3
    with pytest.raises(SettingError, match="REVSYNC_BATCH_PAUSE must be > 0"):
        read(Extra, {"REVSYNC_BATCH_PAUSE": "0"})
    assert "| `REVSYNC_BATCH_PAUSE` | `0.5` s | pause between two batches |" in markdown_table(
        Extra
    )


def test_revsync_signature_lists_its_settings() -> None:
    # help(RevSync) and editors show every setting as a keyword, typed.
    parameters = inspect.signature(RevSync).parameters
    assert list(parameters) == ["app", "store", *KEYWORDS]
    assert parameters["max_staleness"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["max_staleness"].default is None
    assert "float" in str(parameters["max_staleness"].annotation)


def test_an_unknown_key_is_reported_and_a_renamed_one_refused() -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        resolve({"REVSYNC_MAX_STALENES": 5, "REVSYNC_CHANNEL": "x"}, {})
    warned = {e["key"]: e["did_you_mean"] for e in logs if e["event"] == "revsync.unknown_setting"}
    assert warned == {"REVSYNC_MAX_STALENES": "REVSYNC_MAX_STALENESS"}
    with pytest.raises(SettingError, match="REVSYNC_SUBJECT_TTL is now called REVSYNC_CUTOFF_TTL"):
        resolve({"REVSYNC_SUBJECT_TTL": 60}, {})
