"""Tokens in cookies: the set/unset helpers, their attributes, and CSRF double submit."""

from __future__ import annotations

import warnings
from http.cookies import SimpleCookie
from typing import Any

import pytest
from quart import Quart, Response, jsonify

from revsync.jwt import (
    JWTDecodeError,
    create_access_token,
    create_refresh_token,
    decode_token,
    get_csrf_token,
    get_jwt_identity,
    jwt_refresh_token_required,
    jwt_required,
    set_access_cookies,
    set_refresh_cookies,
    unset_access_cookies,
    unset_jwt_cookies,
    unset_refresh_cookies,
)
from revsync.jwt.config import config_for
from tests.jwt.conftest import AppFactory, build_app
from tests.jwt.test_jwt_locations import bearer, send

MISSING_CSRF = (401, {"msg": "Missing CSRF token"})
MISMATCH = (401, {"msg": "CSRF double submit tokens do not match"})


def cookie_app(**config: Any) -> Quart:
    """The decorator routes plus a login that sets the cookies and the logouts."""
    config.setdefault("JWT_TOKEN_LOCATION", ["cookies"])
    app, _ = build_app(**config)

    @app.post("/login")
    async def login() -> Response:
        response = jsonify(login=True)
        set_access_cookies(response, create_access_token("alice"))
        set_refresh_cookies(response, create_refresh_token("alice"))
        return response

    @app.post("/token/refresh")
    @jwt_refresh_token_required
    async def token_refresh() -> Response:
        response = jsonify(refresh=True)
        set_access_cookies(response, create_access_token(get_jwt_identity()))
        return response

    @app.post("/logout")
    async def logout() -> Response:
        response = jsonify(logout=True)
        unset_jwt_cookies(response)
        return response

    @app.post("/logout/access")
    async def logout_access() -> Response:
        response = jsonify(logout=True)
        unset_access_cookies(response)
        return response

    @app.post("/logout/refresh")
    async def logout_refresh() -> Response:
        response = jsonify(logout=True)
        unset_refresh_cookies(response)
        return response

    @app.route("/put", methods=["GET", "PUT", "PATCH", "DELETE"])
    @jwt_required
    async def put() -> Response:
        return jsonify(identity=get_jwt_identity())

    return app


async def set_cookies(app: Quart, path: str = "/login") -> dict[str, SimpleCookie]:
    """The Set-Cookie headers of a POST to ``path``, by cookie name."""
    response = await app.test_client().post(path)
    assert response.status_code == 200, await response.get_data()
    cookies: dict[str, SimpleCookie] = {}
    for header in response.headers.getlist("Set-Cookie"):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        (name,) = parsed.keys()
        cookies[name] = parsed
    return cookies


def attributes(cookie: SimpleCookie) -> dict[str, Any]:
    (morsel,) = cookie.values()
    return {key: value for key, value in morsel.items() if value}


async def login(app: Quart) -> dict[str, str]:
    """The values of the cookies a login sets."""
    return {name: c[name].value for name, c in (await set_cookies(app)).items()}


# -- setting and deleting cookies ----------------------------------------------------------


async def test_login_sets_token_and_csrf_cookies_with_default_attributes() -> None:
    app = cookie_app()
    cookies = await set_cookies(app)
    assert set(cookies) == {
        "access_token_cookie",
        "csrf_access_token",
        "refresh_token_cookie",
        "csrf_refresh_token",
    }
    # Session cookies (no Max-Age, no Expires), no Secure, no Domain, no SameSite.
    for name in ("access_token_cookie", "refresh_token_cookie"):
        assert attributes(cookies[name]) == {"path": "/", "httponly": True}
    for name in ("csrf_access_token", "csrf_refresh_token"):
        assert attributes(cookies[name]) == {"path": "/"}
    async with app.app_context():
        for token_cookie, csrf_cookie in [
            ("access_token_cookie", "csrf_access_token"),
            ("refresh_token_cookie", "csrf_refresh_token"),
        ]:
            token = cookies[token_cookie][token_cookie].value
            csrf = cookies[csrf_cookie][csrf_cookie].value
            assert get_csrf_token(token) == csrf == decode_token(token)["csrf"]


async def test_cookie_settings_are_applied() -> None:
    app = cookie_app(
        JWT_ACCESS_COOKIE_NAME="at",
        JWT_REFRESH_COOKIE_NAME="rt",
        JWT_ACCESS_COOKIE_PATH="/api/",
        JWT_REFRESH_COOKIE_PATH="/token/",
        JWT_ACCESS_CSRF_COOKIE_NAME="cat",
        JWT_REFRESH_CSRF_COOKIE_NAME="crt",
        JWT_ACCESS_CSRF_COOKIE_PATH="/a/",
        JWT_REFRESH_CSRF_COOKIE_PATH="/r/",
        JWT_COOKIE_SECURE=True,
        JWT_COOKIE_DOMAIN="example.test",
        JWT_COOKIE_SAMESITE="Strict",
        JWT_SESSION_COOKIE=False,
    )
    cookies = await set_cookies(app)
    common = {
        "secure": True,
        "domain": "example.test",
        "samesite": "Strict",
        "max-age": "31540000",
    }
    assert {name: attributes(cookie) for name, cookie in cookies.items()} == {
        "at": {
            **common,
            "path": "/api/",
            "httponly": True,
            "expires": cookies["at"]["at"]["expires"],
        },
        "rt": {
            **common,
            "path": "/token/",
            "httponly": True,
            "expires": cookies["rt"]["rt"]["expires"],
        },
        "cat": {**common, "path": "/a/", "expires": cookies["cat"]["cat"]["expires"]},
        "crt": {**common, "path": "/r/", "expires": cookies["crt"]["crt"]["expires"]},
    }


async def test_max_age_argument_overrides_session_cookie() -> None:
    app = cookie_app()

    @app.post("/remember-me")
    async def remember_me() -> Response:
        response = jsonify(login=True)
        set_access_cookies(response, create_access_token("alice"), max_age=60)
        return response

    cookies = await set_cookies(app, "/remember-me")
    assert cookies["access_token_cookie"]["access_token_cookie"]["max-age"] == "60"
    assert cookies["csrf_access_token"]["csrf_access_token"]["max-age"] == "60"


@pytest.mark.parametrize(
    "config", [{"JWT_CSRF_IN_COOKIES": False}, {"JWT_COOKIE_CSRF_PROTECT": False}]
)
async def test_no_csrf_cookies_when_not_wanted(config: dict[str, Any]) -> None:
    app = cookie_app(**config)
    assert set(await set_cookies(app)) == {"access_token_cookie", "refresh_token_cookie"}


@pytest.mark.parametrize(
    ("path", "deleted"),
    [
        (
            "/logout",
            {
                "access_token_cookie",
                "csrf_access_token",
                "refresh_token_cookie",
                "csrf_refresh_token",
            },
        ),
        ("/logout/access", {"access_token_cookie", "csrf_access_token"}),
        ("/logout/refresh", {"refresh_token_cookie", "csrf_refresh_token"}),
    ],
)
async def test_unset_cookies(path: str, deleted: set[str]) -> None:
    app = cookie_app(JWT_COOKIE_SAMESITE="Lax", JWT_REFRESH_COOKIE_PATH="/token/")
    cookies = await set_cookies(app, path)
    assert set(cookies) == deleted
    for name, cookie in cookies.items():
        morsel = cookie[name]
        assert morsel.value == ""
        assert morsel["expires"] == "Thu, 01 Jan 1970 00:00:00 GMT"
        assert morsel["samesite"] == "Lax"
        assert bool(morsel["httponly"]) is not name.startswith("csrf")
    if "refresh_token_cookie" in cookies:
        # Deleting a cookie must name the path it was set with.
        assert cookies["refresh_token_cookie"]["refresh_token_cookie"]["path"] == "/token/"


@pytest.mark.parametrize(
    "helper",
    [set_access_cookies, set_refresh_cookies],
)
async def test_setting_cookies_needs_the_cookie_location(helper: Any) -> None:
    app, _ = build_app()
    async with app.app_context():
        token = create_access_token("alice")
        with pytest.raises(RuntimeWarning, match=f"{helper.__name__}\\(\\) called without"):
            helper(Response(""), token)


@pytest.mark.parametrize("helper", [unset_jwt_cookies, unset_access_cookies, unset_refresh_cookies])
async def test_deleting_cookies_needs_the_cookie_location(helper: Any) -> None:
    app, _ = build_app(JWT_TOKEN_LOCATION=["headers", "json"])
    async with app.app_context():
        with pytest.raises(RuntimeWarning, match="called without 'JWT_TOKEN_LOCATION'"):
            helper(Response(""))


async def test_csrf_claim_only_when_cookies_are_protected() -> None:
    for config, has_csrf in [
        ({"JWT_TOKEN_LOCATION": ["headers"]}, False),
        ({"JWT_TOKEN_LOCATION": ["headers", "cookies"]}, True),
        ({"JWT_TOKEN_LOCATION": ["cookies"], "JWT_COOKIE_CSRF_PROTECT": False}, False),
    ]:
        app, _ = build_app(**config)
        async with app.app_context():
            access = decode_token(create_access_token("alice"))
            refresh = decode_token(create_refresh_token("alice"))
        assert ("csrf" in access, "csrf" in refresh) == (has_csrf, has_csrf), config
        if has_csrf:
            assert access["csrf"] != refresh["csrf"]


async def test_token_without_csrf_claim() -> None:
    headers_app, _ = build_app()
    async with headers_app.app_context():
        plain = create_access_token("alice")
        with pytest.raises(JWTDecodeError, match="Missing claim: csrf"):
            get_csrf_token(plain)
    app = cookie_app()
    async with app.app_context():
        with pytest.raises(JWTDecodeError, match="Missing claim: csrf"):
            set_access_cookies(Response(""), plain)
    # In a request: a token made without CSRF, sent with a CSRF value -> 422.
    assert await send(
        app,
        method="POST",
        cookies={"access_token_cookie": plain},
        headers={"X-CSRF-TOKEN": "anything"},
    ) == (422, {"msg": "Missing claim: csrf"})


# -- CSRF double submit ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_csrf_on_each_checked_method(method: str) -> None:
    app = cookie_app()
    mine = await login(app)
    theirs = await login(app)
    path = "/protected" if method == "POST" else "/put"
    jar = {"access_token_cookie": mine["access_token_cookie"]}
    status, body = await send(
        app, path, method=method, cookies=jar, headers={"X-CSRF-TOKEN": mine["csrf_access_token"]}
    )
    assert (status, body["identity"]) == (200, "alice")
    assert await send(app, path, method=method, cookies=jar) == MISSING_CSRF
    assert await send(app, path, method=method, cookies=jar, headers={"X-CSRF-TOKEN": ""}) == (
        MISSING_CSRF
    )
    assert (
        await send(
            app,
            path,
            method=method,
            cookies=jar,
            headers={"X-CSRF-TOKEN": theirs["csrf_access_token"]},
        )
        == MISMATCH
    )
    # The refresh token's CSRF value does not stand in for the access token's.
    assert (
        await send(
            app,
            path,
            method=method,
            cookies=jar,
            headers={"X-CSRF-TOKEN": mine["csrf_refresh_token"]},
        )
        == MISMATCH
    )


async def test_safe_methods_need_no_csrf() -> None:
    app = cookie_app()
    mine = await login(app)
    status, body = await send(app, cookies={"access_token_cookie": mine["access_token_cookie"]})
    assert (status, body["identity"]) == (200, "alice")


async def test_csrf_methods_setting() -> None:
    app = cookie_app(JWT_CSRF_METHODS=["GET"])
    mine = await login(app)
    jar = {"access_token_cookie": mine["access_token_cookie"]}
    assert await send(app, cookies=jar) == MISSING_CSRF
    assert (await send(app, method="POST", cookies=jar))[0] == 200


async def test_csrf_protect_off() -> None:
    app = cookie_app(JWT_COOKIE_CSRF_PROTECT=False)
    mine = await login(app)
    status, body = await send(
        app, method="POST", cookies={"access_token_cookie": mine["access_token_cookie"]}
    )
    assert (status, body["identity"]) == (200, "alice")


async def test_csrf_header_names() -> None:
    app = cookie_app(JWT_ACCESS_CSRF_HEADER_NAME="X-A", JWT_REFRESH_CSRF_HEADER_NAME="X-R")
    mine = await login(app)
    access_jar = {"access_token_cookie": mine["access_token_cookie"]}
    refresh_jar = {"refresh_token_cookie": mine["refresh_token_cookie"]}
    a, r = mine["csrf_access_token"], mine["csrf_refresh_token"]
    assert (await send(app, method="POST", cookies=access_jar, headers={"X-A": a}))[0] == 200
    assert await send(app, method="POST", cookies=access_jar, headers={"X-CSRF-TOKEN": a}) == (
        MISSING_CSRF
    )
    assert await send(app, method="POST", cookies=access_jar, headers={"X-R": a}) == MISSING_CSRF
    assert (await send(app, "/refresh", method="POST", cookies=refresh_jar, headers={"X-R": r}))[
        0
    ] == 200
    assert (
        await send(app, "/refresh", method="POST", cookies=refresh_jar, headers={"X-A": r})
        == MISSING_CSRF
    )


async def test_deprecated_single_csrf_header_name() -> None:
    app = cookie_app(JWT_CSRF_HEADER_NAME="X-Old")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mine = await login(app)
        jar = {"access_token_cookie": mine["access_token_cookie"]}
        headers = {"X-Old": mine["csrf_access_token"]}
        assert (await send(app, method="POST", cookies=jar, headers=headers))[0] == 200
    assert any(
        issubclass(w.category, DeprecationWarning) and "JWT_CSRF_HEADER_NAME" in str(w.message)
        for w in caught
    )


async def test_csrf_from_form_field() -> None:
    app = cookie_app(JWT_CSRF_CHECK_FORM=True)
    mine = await login(app)
    jar = {"access_token_cookie": mine["access_token_cookie"]}
    csrf = mine["csrf_access_token"]
    assert (await send(app, method="POST", cookies=jar, form={"csrf_token": csrf}))[0] == 200
    assert await send(app, method="POST", cookies=jar, form={"other": csrf}) == MISSING_CSRF
    assert await send(app, method="POST", cookies=jar, form={"csrf_token": "x"}) == MISMATCH
    # The header is preferred; a body that is no form is simply no CSRF value.
    assert (await send(app, method="POST", cookies=jar, headers={"X-CSRF-TOKEN": csrf}))[0] == 200
    assert await send(app, method="POST", cookies=jar, json={"csrf_token": csrf}) == MISSING_CSRF
    # Without the setting, a form field is not looked at.
    strict = cookie_app()
    mine = await login(strict)
    jar = {"access_token_cookie": mine["access_token_cookie"]}
    form = {"csrf_token": mine["csrf_access_token"]}
    assert await send(strict, method="POST", cookies=jar, form=form) == MISSING_CSRF


async def test_csrf_field_names() -> None:
    app = cookie_app(
        JWT_CSRF_CHECK_FORM=True,
        JWT_ACCESS_CSRF_FIELD_NAME="fa",
        JWT_REFRESH_CSRF_FIELD_NAME="fr",
    )
    mine = await login(app)
    jar = {**{"access_token_cookie": mine["access_token_cookie"]}}
    assert (await send(app, method="POST", cookies=jar, form={"fa": mine["csrf_access_token"]}))[
        0
    ] == 200
    refresh_jar = {"refresh_token_cookie": mine["refresh_token_cookie"]}
    form = {"fr": mine["csrf_refresh_token"]}
    assert (await send(app, "/refresh", method="POST", cookies=refresh_jar, form=form))[0] == 200


async def test_cached_token_still_gets_its_csrf_check() -> None:
    app = cookie_app()
    mine = await login(app)
    theirs = await login(app)
    token = mine["access_token_cookie"]
    jar = {"access_token_cookie": token}
    good = {"X-CSRF-TOKEN": mine["csrf_access_token"]}
    assert (await send(app, method="POST", cookies=jar, headers=good))[0] == 200
    assert token in config_for(app).verified  # the next requests hit the cache
    bad = {"X-CSRF-TOKEN": theirs["csrf_access_token"]}
    for _ in range(2):
        assert await send(app, method="POST", cookies=jar, headers=bad) == MISMATCH
        assert await send(app, method="POST", cookies=jar) == MISSING_CSRF
        assert (await send(app, method="POST", cookies=jar, headers=good))[0] == 200


async def test_tokens_in_other_locations_need_no_csrf(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION=["cookies", "headers", "query_string", "json"])
    async with app.app_context():
        access = create_access_token("alice")
    for options in (
        {"headers": bearer(access)},
        {"query_string": {"jwt": access}},
        {"json": {"access_token": access}},
    ):
        status, body = await send(app, method="POST", **options)
        assert (status, body["identity"]) == (200, "alice"), options


async def test_cookie_without_csrf_is_not_skipped_for_the_header(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_TOKEN_LOCATION=["cookies", "headers"])
    async with app.app_context():
        access = create_access_token("alice")
    assert (
        await send(
            app, method="POST", cookies={"access_token_cookie": access}, headers=bearer(access)
        )
        == MISSING_CSRF
    )


async def test_browser_flow_with_the_test_client_cookie_jar() -> None:
    app = cookie_app()
    client = app.test_client()
    assert (await client.post("/login")).status_code == 200
    jar = {cookie.name: cookie.value for cookie in client.cookie_jar or []}
    csrf = {"X-CSRF-TOKEN": jar["csrf_access_token"]}
    assert (await client.get("/protected")).status_code == 200
    assert (await client.post("/protected")).status_code == 401
    assert (await client.post("/protected", headers=csrf)).status_code == 200
    refreshed = await client.post(
        "/token/refresh", headers={"X-CSRF-TOKEN": jar["csrf_refresh_token"]}
    )
    assert refreshed.status_code == 200
    new_jar = {cookie.name: cookie.value for cookie in client.cookie_jar or []}
    assert new_jar["access_token_cookie"] != jar["access_token_cookie"]
    assert (await client.post("/protected", headers=csrf)).status_code == 401  # old CSRF value
    new_csrf = {"X-CSRF-TOKEN": new_jar["csrf_access_token"]}
    assert (await client.post("/protected", headers=new_csrf)).status_code == 200
    assert (await client.post("/logout")).status_code == 200
    assert list(client.cookie_jar or []) == []
    response = await client.get("/protected")
    assert (response.status_code, await response.get_json()) == (
        401,
        {"msg": 'Missing cookie "access_token_cookie"'},
    )
