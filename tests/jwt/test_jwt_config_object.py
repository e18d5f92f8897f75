"""``revsync.jwt.config.config``: quart-jwt-extended's read-only view of the settings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from dateutil.relativedelta import relativedelta
from jwt.algorithms import get_default_algorithms

from revsync.jwt.config import config
from tests.jwt.conftest import SECRET, AppFactory

SETTINGS: dict[str, Any] = {
    "JWT_TOKEN_LOCATION": ["cookies", "json"],
    "JWT_HEADER_NAME": "X-Auth",
    "JWT_HEADER_TYPE": "JWT",
    "JWT_QUERY_STRING_NAME": "token",
    "JWT_ACCESS_COOKIE_NAME": "a_cookie",
    "JWT_REFRESH_COOKIE_NAME": "r_cookie",
    "JWT_ACCESS_COOKIE_PATH": "/api/",
    "JWT_REFRESH_COOKIE_PATH": "/token/refresh",
    "JWT_COOKIE_SECURE": True,
    "JWT_COOKIE_DOMAIN": "example.com",
    "JWT_SESSION_COOKIE": False,
    "JWT_COOKIE_SAMESITE": "Lax",
    "JWT_JSON_KEY": "a_json",
    "JWT_REFRESH_JSON_KEY": "r_json",
    "JWT_COOKIE_CSRF_PROTECT": True,
    "JWT_CSRF_METHODS": ["POST", "delete"],
    "JWT_CSRF_IN_COOKIES": False,
    "JWT_CSRF_CHECK_FORM": True,
    "JWT_ACCESS_CSRF_COOKIE_NAME": "a_csrf",
    "JWT_REFRESH_CSRF_COOKIE_NAME": "r_csrf",
    "JWT_ACCESS_CSRF_COOKIE_PATH": "/a",
    "JWT_REFRESH_CSRF_COOKIE_PATH": "/r",
    "JWT_ACCESS_CSRF_HEADER_NAME": "X-A-CSRF",
    "JWT_REFRESH_CSRF_HEADER_NAME": "X-R-CSRF",
    "JWT_ACCESS_CSRF_FIELD_NAME": "a_field",
    "JWT_REFRESH_CSRF_FIELD_NAME": "r_field",
    "JWT_ACCESS_TOKEN_EXPIRES": 60,
    "JWT_REFRESH_TOKEN_EXPIRES": relativedelta(months=1),
    "JWT_ALGORITHM": "HS512",
    "JWT_DECODE_ALGORITHMS": ["HS256"],
    "JWT_BLACKLIST_ENABLED": True,
    "JWT_BLACKLIST_TOKEN_CHECKS": ["refresh"],
    "JWT_IDENTITY_CLAIM": "sub",
    "JWT_USER_CLAIMS": "uc",
    "JWT_CLAIMS_IN_REFRESH_TOKEN": True,
    "JWT_ERROR_MESSAGE_KEY": "message",
    "JWT_DECODE_AUDIENCE": "aud",
    "JWT_ENCODE_ISSUER": "me",
    "JWT_DECODE_ISSUER": "you",
    "JWT_DECODE_LEEWAY": timedelta(seconds=5),
}

EXPECTED: dict[str, Any] = {
    "token_location": ("cookies", "json"),
    "jwt_in_cookies": True,
    "jwt_in_headers": False,
    "jwt_in_query_string": False,
    "jwt_in_json": True,
    "header_name": "X-Auth",
    "header_type": "JWT",
    "query_string_name": "token",
    "access_cookie_name": "a_cookie",
    "refresh_cookie_name": "r_cookie",
    "access_cookie_path": "/api/",
    "refresh_cookie_path": "/token/refresh",
    "cookie_secure": True,
    "cookie_domain": "example.com",
    "session_cookie": False,
    "cookie_samesite": "Lax",
    "cookie_max_age": 31540000,
    "json_key": "a_json",
    "refresh_json_key": "r_json",
    "csrf_protect": True,
    "csrf_request_methods": {"POST", "DELETE"},
    "csrf_in_cookies": False,
    "csrf_check_form": True,
    "access_csrf_cookie_name": "a_csrf",
    "refresh_csrf_cookie_name": "r_csrf",
    "access_csrf_cookie_path": "/a",
    "refresh_csrf_cookie_path": "/r",
    "access_csrf_header_name": "X-A-CSRF",
    "refresh_csrf_header_name": "X-R-CSRF",
    "access_csrf_field_name": "a_field",
    "refresh_csrf_field_name": "r_field",
    "access_expires": timedelta(seconds=60),
    "refresh_expires": relativedelta(months=1),
    "algorithm": "HS512",
    "decode_algorithms": ("HS256", "HS512"),
    "is_asymmetric": False,
    "blacklist_enabled": True,
    "blacklist_checks": {"refresh"},
    "blacklist_access_tokens": False,
    "blacklist_refresh_tokens": True,
    "identity_claim_key": "sub",
    "user_claims_key": "uc",
    "user_claims_in_refresh_token": True,
    "exempt_methods": {"OPTIONS"},
    "error_msg_key": "message",
    "audience": "aud",
    "encode_issuer": "me",
    "decode_issuer": "you",
    "leeway": 5.0,
}


async def test_every_property_reads_the_app_settings(make_app: AppFactory) -> None:
    app, _ = make_app(**SETTINGS)
    prepared = get_default_algorithms()["HS512"].prepare_key(SECRET)
    async with app.app_context():
        for name, value in EXPECTED.items():
            assert getattr(config, name) == value, name
        assert config.encode_key == config.decode_key == prepared


async def test_defaults_and_changes_after_start(make_app: AppFactory) -> None:
    app, _ = make_app()
    async with app.app_context():
        assert config.token_location == ("headers",)
        assert config.jwt_in_headers
        assert not config.jwt_in_cookies
        assert config.header_type == "Bearer"
        assert config.access_expires == timedelta(minutes=15)
        assert config.refresh_expires == timedelta(days=30)
        assert config.session_cookie
        assert config.cookie_max_age is None
        assert not config.csrf_protect  # no cookies
        assert config.blacklist_checks == {"access", "refresh"}
        assert config.identity_claim_key == "identity"
        assert config.leeway == 0
        app.config["JWT_HEADER_TYPE"] = ""
        app.config["JWT_ACCESS_TOKEN_EXPIRES"] = False
        assert config.header_type == ""
        assert config.access_expires is False


async def test_missing_key_and_read_only(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_ALGORITHM="RS256")
    async with app.app_context():
        assert config.is_asymmetric
        with pytest.raises(RuntimeError, match="JWT_PRIVATE_KEY must be set"):
            _ = config.encode_key
        with pytest.raises(RuntimeError, match="JWT_PUBLIC_KEY must be set"):
            _ = config.decode_key
    with pytest.raises(AttributeError):
        config.algorithm = "HS256"  # type: ignore[misc]


def test_outside_an_app_context_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = config.algorithm


async def test_the_deprecated_csrf_header_name_sets_both(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION="cookies", JWT_CSRF_HEADER_NAME="X-OLD")
    async with app.app_context():
        with pytest.warns(DeprecationWarning, match="JWT_CSRF_HEADER_NAME"):
            access = config.access_csrf_header_name
        assert access == config.refresh_csrf_header_name == "X-OLD"
