"""JWT_TOKEN_LOCATION: headers, cookies, query string and JSON body, alone and together.

Every answer is quart-jwt-extended's: the same status and message, and never a 500.
"""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart

from revsync.jwt import JWTManager, create_access_token, create_refresh_token
from revsync.jwt.config import DEFAULTS, build_config
from tests.jwt.conftest import AppFactory

ALL = ["headers", "cookies", "query_string", "json"]


async def send(
    app: Quart,
    path: str = "/protected",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
    **options: Any,
) -> tuple[int, Any]:
    """One request through the test client; ``options`` go to ``client.open``."""
    sent = dict(headers or {})
    if cookies:
        sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    response = await app.test_client().open(path, method=method, headers=sent, **options)
    return response.status_code, await response.get_json()


async def tokens(app: Quart, identity: str = "alice") -> tuple[str, str]:
    async with app.app_context():
        return create_access_token(identity), create_refresh_token(identity)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- defaults and settings ---------------------------------------------------------


ORIGINAL_DEFAULTS = {
    "JWT_TOKEN_LOCATION": ("headers",),
    "JWT_QUERY_STRING_NAME": "jwt",
    "JWT_ACCESS_COOKIE_NAME": "access_token_cookie",
    "JWT_REFRESH_COOKIE_NAME": "refresh_token_cookie",
    "JWT_ACCESS_COOKIE_PATH": "/",
    "JWT_REFRESH_COOKIE_PATH": "/",
    "JWT_COOKIE_SECURE": False,
    "JWT_COOKIE_DOMAIN": None,
    "JWT_SESSION_COOKIE": True,
    "JWT_COOKIE_SAMESITE": None,
    "JWT_JSON_KEY": "access_token",
    "JWT_REFRESH_JSON_KEY": "refresh_token",
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


def test_init_app_sets_the_original_defaults() -> None:
    app = Quart(__name__)
    JWTManager(app)
    assert {key: app.config[key] for key in ORIGINAL_DEFAULTS} == ORIGINAL_DEFAULTS
    # The list default is the app's own copy.
    app.config["JWT_CSRF_METHODS"].append("GET")
    assert DEFAULTS["JWT_CSRF_METHODS"] == ["POST", "PUT", "PATCH", "DELETE"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("cookies", ("cookies",)),
        (["json", "headers"], ("json", "headers")),
        (("query_string",), ("query_string",)),
        ({"json", "cookies", "headers"}, ("headers", "cookies", "json")),
        (frozenset(ALL), tuple(ALL)),
    ],
)
def test_locations_as_string_sequence_or_set(value: Any, expected: tuple[str, ...]) -> None:
    assert build_config({"JWT_TOKEN_LOCATION": value}).token_locations == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (42, "JWT_TOKEN_LOCATION must be a sequence or a set"),
        (None, "JWT_TOKEN_LOCATION must be a sequence or a set"),
        (
            [],
            'JWT_TOKEN_LOCATION must contain at least one of "headers", "cookies", '
            '"query_string", or "json"',
        ),
        (
            ["headers", "form"],
            'JWT_TOKEN_LOCATION can only contain "headers", "cookies", "query_string", '
            "or \"json\"; got 'form'",
        ),
    ],
)
def test_bad_locations_are_refused(value: Any, message: str) -> None:
    with pytest.raises(RuntimeError) as info:
        build_config({"JWT_TOKEN_LOCATION": value})
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"JWT_QUERY_STRING_NAME": ""}, "JWT_QUERY_STRING_NAME must be a non-empty string"),
        ({"JWT_JSON_KEY": None}, "JWT_JSON_KEY must be a non-empty string"),
        ({"JWT_ACCESS_COOKIE_NAME": ""}, "JWT_ACCESS_COOKIE_NAME must be a non-empty string"),
        ({"JWT_REFRESH_CSRF_HEADER_NAME": 3}, "JWT_REFRESH_CSRF_HEADER_NAME must be a non-empty"),
        ({"JWT_COOKIE_SAMESITE": "sometimes"}, "JWT_COOKIE_SAMESITE must be None or one of"),
        ({"JWT_CSRF_METHODS": 7}, "JWT_CSRF_METHODS must be a sequence of strings"),
        (
            {"JWT_TOKEN_LOCATION": "cookies", "JWT_REFRESH_COOKIE_NAME": "access_token_cookie"},
            "JWT_ACCESS_COOKIE_NAME and JWT_REFRESH_COOKIE_NAME are both "
            "'access_token_cookie' with path '/'",
        ),
        (
            {"JWT_TOKEN_LOCATION": "cookies", "JWT_ACCESS_CSRF_COOKIE_NAME": "access_token_cookie"},
            "JWT_ACCESS_COOKIE_NAME and JWT_ACCESS_CSRF_COOKIE_NAME are both",
        ),
        (
            {"JWT_TOKEN_LOCATION": "cookies", "JWT_REFRESH_CSRF_COOKIE_NAME": "csrf_access_token"},
            "JWT_ACCESS_CSRF_COOKIE_NAME and JWT_REFRESH_CSRF_COOKIE_NAME are both",
        ),
    ],
)
def test_bad_location_settings_are_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        build_config(config)


@pytest.mark.parametrize(
    "config",
    [
        # Same names on different paths never meet in one cookie jar slot.
        {"JWT_REFRESH_COOKIE_NAME": "access_token_cookie", "JWT_REFRESH_COOKIE_PATH": "/auth"},
        # CSRF cookies that are never set cannot clash.
        {"JWT_ACCESS_CSRF_COOKIE_NAME": "access_token_cookie", "JWT_CSRF_IN_COOKIES": False},
        {"JWT_ACCESS_CSRF_COOKIE_NAME": "access_token_cookie", "JWT_COOKIE_CSRF_PROTECT": False},
    ],
)
def test_cookie_names_that_do_not_clash(config: dict[str, Any]) -> None:
    build_config({"JWT_TOKEN_LOCATION": "cookies", **config})


def test_samesite_and_methods_are_normalised() -> None:
    cfg = build_config(
        {"JWT_COOKIE_SAMESITE": "lax", "JWT_CSRF_METHODS": ["post", "Delete"]},
    )
    assert cfg.cookie_samesite == "Lax"
    assert cfg.csrf_methods == frozenset({"POST", "DELETE"})


# -- each location on its own ------------------------------------------------------


async def test_query_string(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION="query_string")
    access, refresh = await tokens(app)
    status, body = await send(app, query_string={"jwt": access})
    assert (status, body["identity"]) == (200, "alice")
    status, body = await send(app, "/refresh", method="POST", query_string={"jwt": refresh})
    assert (status, body["type"]) == (200, "refresh")
    missing = (401, {"msg": 'Missing "jwt" query paramater'})
    assert await send(app) == missing
    assert await send(app, query_string={"jwt": ""}) == missing
    assert await send(app, query_string={"token": access}) == missing


async def test_query_string_name(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION=["query_string"], JWT_QUERY_STRING_NAME="token")
    access, _ = await tokens(app)
    assert (await send(app, query_string={"token": access}))[0] == 200
    assert await send(app, query_string={"jwt": access}) == (
        401,
        {"msg": 'Missing "token" query paramater'},
    )


async def test_json_body(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION=["json"])
    access, refresh = await tokens(app)
    status, body = await send(app, method="POST", json={"access_token": access})
    assert (status, body["identity"]) == (200, "alice")
    status, body = await send(app, "/refresh", method="POST", json={"refresh_token": refresh})
    assert (status, body["type"]) == (200, "refresh")
    # Each token type has its own key.
    assert await send(app, "/refresh", method="POST", json={"access_token": refresh}) == (
        401,
        {"msg": 'Missing "refresh_token" key in json data.'},
    )


async def test_json_keys(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION="json", JWT_JSON_KEY="a", JWT_REFRESH_JSON_KEY="r")
    access, refresh = await tokens(app)
    assert (await send(app, method="POST", json={"a": access}))[0] == 200
    assert (await send(app, "/refresh", method="POST", json={"r": refresh}))[0] == 200
    assert await send(app, method="POST", json={"access_token": access}) == (
        401,
        {"msg": 'Missing "a" key in json data.'},
    )


async def test_json_content_type_with_charset_is_accepted(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION="json")
    access, _ = await tokens(app)
    status, _ = await send(
        app,
        method="POST",
        headers={"Content-Type": "application/json; charset=utf-8"},
        data=f'{{"access_token": "{access}"}}',
    )
    assert status == 200


WRONG_TYPE = {"msg": "Invalid content-type. Must be application/json."}
MISSING_KEY = {"msg": 'Missing "access_token" key in json data.'}


@pytest.mark.parametrize(
    ("request_options", "answer"),
    [
        ({}, (401, WRONG_TYPE)),
        ({"form": {"access_token": "x"}}, (401, WRONG_TYPE)),
        ({"headers": {"Content-Type": "text/plain"}, "data": "{}"}, (401, WRONG_TYPE)),
        ({"headers": {"Content-Type": "application/vnd+json"}, "data": "{}"}, (401, WRONG_TYPE)),
        ({"headers": {"Content-Type": "application/json"}, "data": ""}, (401, MISSING_KEY)),
        (
            {"headers": {"Content-Type": "application/json"}, "data": "{not json"},
            (401, MISSING_KEY),
        ),
        (
            {"headers": {"Content-Type": "application/json"}, "data": b"\xff\xfe\x00"},
            (401, MISSING_KEY),
        ),
        (
            {"headers": {"Content-Type": "application/json"}, "data": "[" * 100_000},
            (401, MISSING_KEY),
        ),
        ({"json": ["access_token"]}, (401, MISSING_KEY)),
        ({"json": "access_token"}, (401, MISSING_KEY)),
        ({"json": {"other": 1}}, (401, MISSING_KEY)),
        (
            {"json": {"access_token": 5}},
            (422, {"msg": 'Invalid "access_token" in json data: the token must be a string'}),
        ),
        (
            {"json": {"access_token": None}},
            (422, {"msg": 'Invalid "access_token" in json data: the token must be a string'}),
        ),
        ({"json": {"access_token": ""}}, (422, {"msg": "Not enough segments"})),
        ({"json": {"access_token": "not.a.token"}}, (422, {"msg": "Invalid header padding"})),
    ],
)
async def test_json_bad_input(
    make_app: AppFactory, request_options: dict[str, Any], answer: tuple[int, Any]
) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION="json")
    assert await send(app, method="POST", **request_options) == answer


async def test_cookies_alone(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION="cookies")
    access, refresh = await tokens(app)
    status, body = await send(app, cookies={"access_token_cookie": access})
    assert (status, body["identity"]) == (200, "alice")
    assert await send(app) == (401, {"msg": 'Missing cookie "access_token_cookie"'})
    assert await send(app, cookies={"access_token_cookie": ""}) == (
        401,
        {"msg": 'Missing cookie "access_token_cookie"'},
    )
    # The refresh token has its own cookie (GET is not CSRF-checked by default).
    assert await send(app, "/refresh", cookies={"access_token_cookie": refresh}) == (
        401,
        {"msg": 'Missing cookie "refresh_token_cookie"'},
    )
    status, body = await send(app, "/refresh", cookies={"refresh_token_cookie": refresh})
    assert (status, body["type"]) == (200, "refresh")


async def test_cookie_names(make_app: AppFactory) -> None:
    app, _ = make_app(
        JWT_TOKEN_LOCATION="cookies", JWT_ACCESS_COOKIE_NAME="a", JWT_REFRESH_COOKIE_NAME="r"
    )
    access, refresh = await tokens(app)
    assert (await send(app, cookies={"a": access}))[0] == 200
    assert (await send(app, "/refresh", cookies={"r": refresh}))[0] == 200
    assert await send(app, cookies={"access_token_cookie": access}) == (
        401,
        {"msg": 'Missing cookie "a"'},
    )


# -- a token where it is not looked for ----------------------------------------------


@pytest.mark.parametrize(
    ("locations", "message"),
    [
        ("headers", "Missing Authorization Header"),
        ("cookies", 'Missing cookie "access_token_cookie"'),
        ("query_string", 'Missing "jwt" query paramater'),
        ("json", 'Missing "access_token" key in json data.'),
    ],
)
async def test_token_in_a_location_not_enabled(
    make_app: AppFactory, locations: str, message: str
) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION=locations)
    access, _ = await tokens(app)
    everywhere = {
        "headers": bearer(access),
        "cookies": {"access_token_cookie": access},
        "query_string": {"jwt": access},
        "json": {"access_token": access},
    }
    del everywhere[locations]
    if locations == "json":
        everywhere["json"] = {"unrelated": True}  # a JSON body, but not the token in it
    assert await send(app, method="POST", **everywhere) == (401, {"msg": message})


# -- several locations -----------------------------------------------------------------


async def test_several_locations_none_has_a_token(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION=ALL)
    assert await send(app) == (
        401,
        {
            "msg": "Missing JWT in headers, cookies, query_string or json "
            '(Missing Authorization Header; Missing cookie "access_token_cookie"; '
            'Missing "jwt" query paramater; Invalid content-type. Must be application/json.)'
        },
    )
    other, _ = make_app(JWT_TOKEN_LOCATION=["query_string", "headers"])
    assert await send(other) == (
        401,
        {
            "msg": 'Missing JWT in query_string or headers (Missing "jwt" query paramater; '
            "Missing Authorization Header)"
        },
    )


@pytest.mark.parametrize("where", ALL)
async def test_several_locations_any_one_will_do(make_app: AppFactory, where: str) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION=ALL)
    access, _ = await tokens(app)
    options: dict[str, Any] = {
        "headers": {"headers": bearer(access)},
        "cookies": {"cookies": {"access_token_cookie": access}},
        "query_string": {"query_string": {"jwt": access}},
        "json": {"json": {"access_token": access}},
    }[where]
    # GET: the cookie needs no CSRF value; a GET may still carry a JSON body.
    status, body = await send(app, **options)
    assert (status, body["identity"]) == (200, "alice")


@pytest.mark.parametrize(
    ("locations", "identity"),
    [(["headers", "cookies"], "bob"), (["cookies", "headers"], "alice")],
)
async def test_conflicting_locations_the_first_configured_wins(
    make_app: AppFactory, locations: list[str], identity: str
) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION=locations)
    alice, _ = await tokens(app, "alice")
    bob, _ = await tokens(app, "bob")
    status, body = await send(app, headers=bearer(bob), cookies={"access_token_cookie": alice})
    assert (status, body["identity"]) == (200, identity)


async def test_an_invalid_token_is_not_skipped_for_a_later_location(
    make_app: AppFactory,
) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION=["headers", "cookies", "query_string"])
    access, refresh = await tokens(app)
    good_cookie = {"access_token_cookie": access}
    assert await send(app, headers=bearer("garbage"), cookies=good_cookie) == (
        422,
        {"msg": "Not enough segments"},
    )
    assert await send(app, headers={"Authorization": "Basic x"}, cookies=good_cookie) == (
        422,
        {"msg": "Bad Authorization header. Expected value 'Bearer <JWT>'"},
    )
    assert await send(
        app, cookies={"access_token_cookie": refresh}, query_string={"jwt": access}
    ) == (
        422,
        {"msg": "Only access tokens are allowed"},
    )


async def test_optional_with_several_locations(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION=ALL)
    access, _ = await tokens(app)
    status, body = await send(app, "/optional", method="POST")
    assert (status, body["identity"]) == (200, None)
    status, body = await send(app, "/optional", method="POST", query_string={"jwt": access})
    assert (status, body["identity"]) == (200, "alice")
    # A cookie without its CSRF value is refused, not ignored, as in the original.
    assert await send(app, "/optional", method="POST", cookies={"access_token_cookie": access}) == (
        401,
        {"msg": "Missing CSRF token"},
    )
    assert await send(app, "/optional", query_string={"jwt": "x"}) == (
        422,
        {"msg": "Not enough segments"},
    )


async def test_options_requests_are_exempt(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION=ALL)

    @app.route("/preflight", methods=["OPTIONS"])
    async def preflight() -> Any:
        from revsync.jwt import verify_jwt_in_request

        await verify_jwt_in_request()
        return {"ok": True}

    assert await send(app, "/preflight", method="OPTIONS") == (200, {"ok": True})


async def test_location_settings_changed_after_first_request_are_seen(
    make_app: AppFactory,
) -> None:
    app, _ = make_app()
    assert await send(app) == (401, {"msg": "Missing Authorization Header"})
    app.config["JWT_TOKEN_LOCATION"] = ["cookies"]
    assert await send(app) == (401, {"msg": 'Missing cookie "access_token_cookie"'})
    app.config["JWT_ACCESS_COOKIE_NAME"] = "session"
    assert await send(app) == (401, {"msg": 'Missing cookie "session"'})
    app.config["JWT_TOKEN_LOCATION"].append("query_string")  # edited in place
    app.config["JWT_QUERY_STRING_NAME"] = "t"
    assert await send(app) == (
        401,
        {
            "msg": 'Missing JWT in cookies or query_string (Missing cookie "session"; '
            'Missing "t" query paramater)'
        },
    )
