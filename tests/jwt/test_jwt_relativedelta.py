"""Calendar lifetimes: a ``dateutil.relativedelta`` wherever a lifetime is accepted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt as pyjwt
import pytest
from dateutil.relativedelta import relativedelta

from revsync.config import longest_span, span_from
from revsync.jwt import create_access_token, create_refresh_token
from revsync.jwt.config import build_config
from tests.jwt.conftest import AppFactory, call


def unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = pyjwt.decode(token, options={"verify_signature": False})
    return claims


def expected_exp(nbf: int, delta: relativedelta) -> int:
    return int((datetime.fromtimestamp(nbf, UTC) + delta).timestamp())


async def test_relativedelta_settings(make_app: AppFactory) -> None:
    app, _ = make_app(
        JWT_ACCESS_TOKEN_EXPIRES=relativedelta(days=1),
        JWT_REFRESH_TOKEN_EXPIRES=relativedelta(months=1),
    )
    async with app.app_context():
        access = create_access_token("alice")
        refresh = create_refresh_token("alice")
    a, r = unverified(access), unverified(refresh)
    assert a["exp"] - a["nbf"] == 24 * 3600
    assert r["exp"] == expected_exp(r["nbf"], relativedelta(months=1))  # by calendar
    assert (await call(app, "/protected", access))[0] == 200
    assert (await call(app, "/refresh", refresh, method="POST"))[0] == 200


async def test_negative_relativedelta_setting_makes_expired_tokens(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_ACCESS_TOKEN_EXPIRES=relativedelta(seconds=-1))
    async with app.app_context():
        token = create_access_token("alice")
    assert await call(app, "/protected", token) == (401, {"msg": "Token has expired"})


async def test_relativedelta_expires_delta(make_app: AppFactory) -> None:
    app, _ = make_app()
    async with app.app_context():
        day = create_access_token("alice", expires_delta=relativedelta(days=1))
        expired = create_access_token("alice", expires_delta=relativedelta(seconds=-1))
        refresh = create_refresh_token("alice", expires_delta=relativedelta(days=1))
        expired_refresh = create_refresh_token("alice", expires_delta=relativedelta(seconds=-1))
    claims = unverified(day)
    assert claims["exp"] - claims["nbf"] == 24 * 3600
    assert (await call(app, "/protected", day))[0] == 200
    assert await call(app, "/protected", expired) == (401, {"msg": "Token has expired"})
    assert (await call(app, "/refresh", refresh, method="POST"))[0] == 200
    assert await call(app, "/refresh", expired_refresh, method="POST") == (
        401,
        {"msg": "Token has expired"},
    )


def test_non_lifetimes_are_still_refused() -> None:
    for value in ("soon", 1.5, True, None, object()):
        with pytest.raises(RuntimeError, match="relativedelta"):
            build_config({"JWT_ACCESS_TOKEN_EXPIRES": value})


def test_spans_of_calendar_lifetimes() -> None:
    jan_1 = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    feb_1 = datetime(2025, 2, 1, tzinfo=UTC).timestamp()
    assert span_from(relativedelta(months=1), jan_1) == 31 * 86400
    assert span_from(relativedelta(months=1), feb_1) == 28 * 86400
    assert longest_span(relativedelta(months=1)) == 31 * 86400
    assert longest_span(relativedelta(years=1)) == 366 * 86400
    assert longest_span(relativedelta(seconds=-1)) == -1
