"""The request path through the real Quart test client: decorators and bad input.

Every bad input gets a clean 4xx with quart-jwt-extended's message, never a 500.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import jwt as pyjwt
import pytest
from quart import Quart

from revsync.jwt import create_access_token, create_refresh_token
from tests.jwt.conftest import SECRET, AppFactory, b64, call, raw_token

ACCESS_PATHS = ["/protected", "/protected-called", "/v4-optional"]
FRESH_PATHS = ["/fresh", "/fresh-called", "/v4-fresh"]
REFRESH_PATHS = ["/refresh", "/refresh-called", "/v4-refresh"]
OPTIONAL_PATHS = ["/optional", "/optional-called", "/v4-optional"]


async def tokens(app: Quart, **access: Any) -> tuple[str, str]:
    async with app.app_context():
        return create_access_token("alice", **access), create_refresh_token("alice")


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "jti": "4d1c2c4e-3f56-4a43-9c3d-3b8f1e0b1f00",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "type": "access",
        "fresh": False,
        "identity": "alice",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(**overrides: Any) -> str:
    return pyjwt.encode(claims(**overrides), SECRET, algorithm="HS256")


@pytest.mark.parametrize("path", [*ACCESS_PATHS, "/sync-view"])
async def test_access_decorators_bare_and_called(make_app: AppFactory, path: str) -> None:
    app, _ = make_app()
    access, refresh = await tokens(app)
    status, body = await call(app, path, access)
    assert (status, body["identity"]) == (200, "alice")
    assert await call(app, path, refresh) == (422, {"msg": "Only access tokens are allowed"})


@pytest.mark.parametrize("path", ["/protected", "/protected-called", "/sync-view"])
async def test_missing_header(make_app: AppFactory, path: str) -> None:
    app, _ = make_app()
    assert await call(app, path) == (401, {"msg": "Missing Authorization Header"})


@pytest.mark.parametrize("path", REFRESH_PATHS)
async def test_refresh_decorators_bare_and_called(make_app: AppFactory, path: str) -> None:
    app, _ = make_app()
    access, refresh = await tokens(app)
    status, body = await call(app, path, refresh, method="POST")
    assert (status, body["identity"], body["type"]) == (200, "alice", "refresh")
    assert await call(app, path, access, method="POST") == (
        422,
        {"msg": "Only refresh tokens are allowed"},
    )
    assert await call(app, path, method="POST") == (
        401,
        {"msg": "Missing Authorization Header"},
    )


@pytest.mark.parametrize("path", FRESH_PATHS)
async def test_fresh_decorators_bare_and_called(make_app: AppFactory, path: str) -> None:
    app, _ = make_app()
    fresh, _ = await tokens(app, fresh=True)
    stale, _ = await tokens(app)
    fresh_for_a_while, _ = await tokens(app, fresh=timedelta(minutes=5))
    fresh_until_past, _ = await tokens(app, fresh=timedelta(seconds=-5))
    assert (await call(app, path, fresh))[0] == 200
    assert (await call(app, path, fresh_for_a_while))[0] == 200
    assert await call(app, path, stale) == (401, {"msg": "Fresh token required"})
    assert await call(app, path, fresh_until_past) == (401, {"msg": "Fresh token required"})
    assert await call(app, path) == (401, {"msg": "Missing Authorization Header"})


@pytest.mark.parametrize("path", OPTIONAL_PATHS)
async def test_optional_with_and_without_token(make_app: AppFactory, path: str) -> None:
    app, _ = make_app()
    access, refresh = await tokens(app)
    status, body = await call(app, path, access)
    assert (status, body["identity"]) == (200, "alice")
    status, body = await call(app, path)
    assert (status, body["identity"], body["claims"]) == (200, None, {})
    # A header in the wrong shape counts as no token, as in the original.
    status, body = await call(app, path, headers={"Authorization": "Basic abc"})
    assert (status, body["identity"]) == (200, None)
    # A token that is present must be valid.
    assert await call(app, path, "garbage") == (422, {"msg": "Not enough segments"})
    assert await call(app, path, refresh) == (422, {"msg": "Only access tokens are allowed"})
    expired, _ = await tokens(app, expires_delta=timedelta(seconds=-5))
    assert await call(app, path, expired) == (401, {"msg": "Token has expired"})


BAD_HEADER = "Bad Authorization header. Expected value 'Bearer <JWT>'"


@pytest.mark.parametrize(
    "value",
    ["abc.def.ghi", "Bearer", "Bearer a b", "Token abc", "bearer abc", ",", "Basic x, Token y"],
)
async def test_bad_authorization_header(make_app: AppFactory, value: str) -> None:
    app, _ = make_app()
    assert await call(app, "/protected", headers={"Authorization": value}) == (
        422,
        {"msg": BAD_HEADER},
    )


async def test_header_with_several_credentials(make_app: AppFactory) -> None:
    app, _ = make_app()
    access, _ = await tokens(app)
    value = f"Basic dXNlcjpwYXNz, Bearer {access}"
    assert (await call(app, "/protected", headers={"Authorization": value}))[0] == 200


async def test_custom_header_name_and_no_type(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_HEADER_NAME="X-Token", JWT_HEADER_TYPE="")
    access, _ = await tokens(app)
    assert (await call(app, "/protected", headers={"X-Token": access}))[0] == 200
    assert await call(app, "/protected", headers={"X-Token": f"Bearer {access}"}) == (
        422,
        {"msg": "Bad X-Token header. Expected value '<JWT>'"},
    )
    assert await call(app, "/protected", access) == (401, {"msg": "Missing X-Token Header"})


async def test_error_message_key(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_ERROR_MESSAGE_KEY="error")
    assert await call(app, "/protected") == (401, {"error": "Missing Authorization Header"})
    assert await call(app, "/protected", "x") == (422, {"error": "Not enough segments"})


def _deep_header_token() -> str:
    return b64(b"[" * 70_000) + "." + b64(b"{}") + "." + b64(b"sig")


BAD_TOKENS: dict[str, tuple[Any, int, str]] = {
    "garbage": (lambda: "garbage", 422, "Not enough segments"),
    "three garbage segments": (lambda: "a.b.c", 422, "Invalid header padding"),
    "truncated to two segments": (
        lambda: signed().rsplit(".", 1)[0],
        422,
        "Not enough segments",
    ),
    "truncated payload": (
        lambda: (lambda h, p, s: f"{h}.{p[: len(p) // 4 * 4 - 4]}.{s}")(*signed().split(".")),
        422,
        "Signature verification failed",
    ),
    "wrong signature": (
        lambda: pyjwt.encode(claims(), "another-secret-of-at-least-32-bytes!!"),
        422,
        "Signature verification failed",
    ),
    "alg none": (
        lambda: pyjwt.encode(claims(), None, algorithm="none"),
        422,
        "The specified alg value is not allowed",
    ),
    "alg none by hand": (
        lambda: raw_token({"alg": "none"}, claims(), b""),
        422,
        "The specified alg value is not allowed",
    ),
    # Missing jti, exp, iat or type: accepted (test_jwt_foreign_tokens.py).
    "unknown type": (lambda: signed(type="id"), 422, "Missing or invalid claim: type"),
    "missing identity": (lambda: signed(identity=None), 422, "Missing claim: identity"),
    "non-string jti": (lambda: signed(jti=7), 422, "JWT ID must be a string"),
    "future nbf": (
        lambda: signed(nbf=int(time.time()) + 3600),
        422,
        "The token is not yet valid (nbf)",
    ),
    "non-integer exp": (
        lambda: signed(exp="soon"),
        422,
        "Expiration Time claim (exp) must be an integer.",
    ),
    "payload not an object": (
        lambda: pyjwt.api_jws.encode(b"[1]", SECRET, algorithm="HS256"),
        422,
        "Invalid payload string: must be a json object",
    ),
    "deeply nested header": (
        _deep_header_token,
        422,
        "Invalid header string: maximum recursion depth exceeded while decoding "
        "a JSON array from a unicode string",
    ),
    "100 KB token": (lambda: "A" * 100_000, 422, "Not enough segments"),
    "100 KB three-part token": (
        lambda: ".".join(["A" * 40_000, "B" * 40_000, "C" * 20_000]),
        422,
        "Invalid header string: Expecting value: line 1 column 1 (char 0)",
    ),
    "expired": (lambda: signed(exp=int(time.time()) - 10), 401, "Token has expired"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_token(make_app: AppFactory, case: str) -> None:
    make_token, status, message = BAD_TOKENS[case]
    app, _ = make_app()
    assert await call(app, "/protected", make_token()) == (status, {"msg": message})


async def test_non_latin1_header_is_a_clean_4xx(make_app: AppFactory) -> None:
    app, _ = make_app()
    status, body = await call(app, "/protected", "ey\u00e9.ab\u00ff.cd")
    assert (status, body) == (422, {"msg": "Invalid header padding"})


async def test_token_signed_in_the_future_is_refused(make_app: AppFactory) -> None:
    app, _ = make_app()
    token = signed(iat=int(time.time()) + 3600)
    assert await call(app, "/protected", token) == (
        422,
        {"msg": "The token is not yet valid (iat)"},
    )
