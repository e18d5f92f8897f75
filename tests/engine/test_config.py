"""Settings: defaults, parsing from strings, and errors that name the key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from revsync import RevSync
from revsync.config import DEFAULTS, NEVER_EXPIRES_TTL, resolve
from tests.engine.conftest import make_app


def test_defaults() -> None:
    settings = resolve({}, {})
    assert settings.redis_url == DEFAULTS["REVSYNC_REDIS_URL"]
    assert settings.channel == "revsync"
    assert settings.fail_mode == "closed"
    assert settings.event_key is None
    assert settings.cutoff_ttl == timedelta(days=30).total_seconds()
    assert settings.identity_claim == "identity"


def test_strings_from_the_environment_are_parsed() -> None:
    settings = resolve(
        {
            "REVSYNC_RESYNC_INTERVAL": "2.5",
            "REVSYNC_MAX_STALENESS": "10",
            "REVSYNC_FAIL_MODE": "OPEN",
            "REVSYNC_WAIT_FOR_READY": "false",
            "REVSYNC_EVENT_KEY": "secret",
            "JWT_REFRESH_TOKEN_EXPIRES": False,
        },
        {},
    )
    assert settings.resync_interval == 2.5
    assert settings.max_staleness == 10
    assert settings.fail_mode == "open"
    assert settings.wait_for_ready is False
    assert settings.event_key == b"secret"
    assert settings.cutoff_ttl == NEVER_EXPIRES_TTL


def test_keywords_win_over_config() -> None:
    settings = resolve({"REVSYNC_CHANNEL": "from-config"}, {"channel": "from-keyword"})
    assert settings.channel == "from-keyword"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("REVSYNC_REDIS_URL", "http://127.0.0.1:6379"),
        ("REVSYNC_REDIS_URL", "redis://"),
        ("REVSYNC_REDIS_URL", "redis://host:notaport/0"),
        ("REVSYNC_REDIS_URL", "redis://host:6379/db"),
        ("REVSYNC_REDIS_URL", 42),
        ("REVSYNC_FAIL_MODE", "sometimes"),
        ("REVSYNC_RESYNC_INTERVAL", "soon"),
        ("REVSYNC_RESYNC_INTERVAL", -1),
        ("REVSYNC_MAX_STALENESS", "0"),
        ("REVSYNC_MAX_STALENESS", "0.5"),
        ("REVSYNC_CHANNEL", ""),
        ("REVSYNC_WAIT_FOR_READY", "maybe"),
        ("REVSYNC_STORE_URL", ""),
    ],
)
def test_invalid_values_name_their_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        resolve({key: value}, {})


@pytest.mark.parametrize(
    "url", ["mysql://localhost/x", "sqlite://", "not a url", "postgresql://host:99999/db"]
)
def test_malformed_store_url_fails_at_init_naming_the_key(url: str) -> None:
    with pytest.raises(ValueError, match="REVSYNC_STORE_URL"):
        RevSync(make_app(REVSYNC_STORE_URL=url))


def test_extension_registers_itself_and_the_denylist_loader() -> None:
    from revsync.jwt import JWTManager

    app = make_app(REVSYNC_STORE_URL="sqlite:///unused.db")
    jwt = JWTManager(app)
    revsync = RevSync(app)
    assert app.extensions["revsync"] is revsync
    # Either order of creation wires the loader.
    app2 = make_app(REVSYNC_STORE_URL="sqlite:///unused.db")
    revsync2 = RevSync(app2)
    jwt2 = JWTManager(app2)
    for manager, ext in ((jwt, revsync), (jwt2, revsync2)):
        assert manager.denylist_loader == ext.check_token


def test_a_leeway_below_the_jwt_decode_leeway_is_refused() -> None:
    """Revocations dropped while the JWT layer still accepts their tokens are forgotten."""
    with pytest.raises(ValueError, match=r"REVSYNC_LEEWAY .*JWT_DECODE_LEEWAY"):
        resolve({"JWT_DECODE_LEEWAY": 30, "REVSYNC_LEEWAY": 10}, {})
    with pytest.raises(ValueError, match="REVSYNC_LEEWAY"):
        resolve({"JWT_DECODE_LEEWAY": timedelta(seconds=30)}, {"leeway": 29.5})
    assert resolve({"JWT_DECODE_LEEWAY": 30, "REVSYNC_LEEWAY": 30}, {}).leeway == 30
    assert resolve({"JWT_DECODE_LEEWAY": timedelta(seconds=12)}, {}).leeway == 12


def test_a_calendar_lifetime_sets_the_cutoff_ttl_to_its_longest_span() -> None:
    from dateutil.relativedelta import relativedelta

    settings = resolve(
        {
            "JWT_ACCESS_TOKEN_EXPIRES": relativedelta(minutes=15),
            "JWT_REFRESH_TOKEN_EXPIRES": relativedelta(months=1),
        },
        {},
    )
    assert settings.cutoff_ttl == 31 * 86400  # January, not February


async def test_calendar_lifetimes_work_with_the_extension() -> None:
    """The lifetime check of RevSync's payload hook sees the calendar exp."""
    from dateutil.relativedelta import relativedelta

    from revsync.jwt import JWTManager, create_access_token, create_refresh_token

    app = make_app(
        REVSYNC_STORE_URL="sqlite:///unused.db",
        JWT_REFRESH_TOKEN_EXPIRES=relativedelta(months=1),
    )
    JWTManager(app)
    RevSync(app)
    async with app.app_context():
        create_refresh_token("alice")
        create_access_token("alice", expires_delta=relativedelta(days=1))
        with pytest.raises(ValueError, match="REVSYNC_CUTOFF_TTL"):
            create_refresh_token("alice", expires_delta=relativedelta(months=2))


async def test_the_registry_records_calendar_lifetimes(
    sqlite_url: str, redis_url: str, channel: str
) -> None:
    """expires_at of a registered token is its exp: issue time plus the relativedelta."""
    from datetime import UTC, datetime

    import jwt as pyjwt
    from dateutil.relativedelta import relativedelta

    from revsync.jwt import JWTManager

    lifetime = relativedelta(months=1)
    app = make_app(JWT_REFRESH_TOKEN_EXPIRES=lifetime)
    JWTManager(app)
    revsync = RevSync(
        app, store_url=sqlite_url, redis_url=redis_url, channel=channel, track_tokens=True
    )
    await revsync.start()
    try:
        async with app.app_context():
            issued = await revsync.registry.issue_tokens("alice")
            active = await revsync.registry.active_tokens("alice")
    finally:
        await revsync.stop()
    assert issued.refresh is not None
    assert issued.refresh_token is not None
    claims = pyjwt.decode(issued.refresh_token, options={"verify_signature": False})
    start = datetime.fromtimestamp(int(issued.refresh.issued_at), UTC)
    assert claims["exp"] == issued.refresh.expires_at == (start + lifetime).timestamp()
    assert {r.jti for r in active} == {issued.access.jti, issued.refresh.jti}
