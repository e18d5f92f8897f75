"""Tokens minted elsewhere, delivered in every location (attack 14, second round).

The attacker holds the app's key (another service that shares it, or a leaked
key) and mints tokens with missing or odd claims: no type, fresh, jti, exp or iat,
no csrf claim.  The client sends them by cookie (with and without CSRF
protection), query string, JSON body and header, to access, refresh, fresh and
optional routes.  Each probe asserts the safe answer: the one quart-jwt-extended
gives where it is safe, a 401/422 JSON refusal where a check cannot be made, never
a 500, and never an acceptance when a revocation check applies and cannot be done.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from quart import Quart, Response, jsonify, request

from revsync import RevSync
from revsync.jwt import create_access_token, set_access_cookies, set_refresh_cookies
from tests.jwt.conftest import SECRET, build_app
from tests.jwt.test_jwt_locations import send

NO_JTI = (422, {"msg": "Token has no jti claim, so its revocation cannot be checked"})
NEVER_BOUNDED = (
    422,
    {
        "msg": "Token has no exp and no iat claim, so its revocation cannot be checked "
        "(it never expires and tells no issue time)"
    },
)
REVOKED = (401, {"msg": "Token has been revoked"})
ONLY_REFRESH = (422, {"msg": "Only refresh tokens are allowed"})
ONLY_ACCESS = (422, {"msg": "Only access tokens are allowed"})
NOT_FRESH = (401, {"msg": "Fresh token required"})
MISSING_CSRF = (401, {"msg": "Missing CSRF token"})
NO_CSRF_CLAIM = (422, {"msg": "Missing claim: csrf"})
MISMATCH = (401, {"msg": "CSRF double submit tokens do not match"})

LOCATIONS = ["headers", "cookies", "query_string", "json"]


def minted(**claims: Any) -> str:
    """A token signed with the app's key carrying exactly ``claims``."""
    return pyjwt.encode(claims, SECRET, algorithm="HS256")


def soon() -> int:
    return int(time.time()) + 600


def carried(location: str, token: str, kind: str = "access") -> dict[str, Any]:
    """The ``send`` keywords that put ``token`` in ``location`` (GET, or POST for JSON)."""
    if location == "headers":
        return {"headers": {"Authorization": f"Bearer {token}"}}
    if location == "cookies":
        return {"cookies": {f"{kind}_token_cookie": token}}
    if location == "query_string":
        return {"query_string": {"jwt": token}}
    return {"method": "POST", "json": {f"{kind}_token": token}}


def ok(identity: str = "alice", kind: str = "access") -> tuple[int, Any]:
    return 200, {"identity": identity, "claims": {}, "type": kind, "kid": None, "user": None}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Quart, RevSync]]:
    """Every location enabled (cookies CSRF-protected), RevSync started."""
    app, _ = build_app(JWT_BLACKLIST_ENABLED=True, JWT_TOKEN_LOCATION=LOCATIONS)
    revsync = RevSync(app, redis_url="memory://", store_url=f"sqlite:///{tmp_path}/r.db")
    async with app.test_app():
        yield app, revsync


# -- every location: the revocation check's fail-safe refusals -------------------------


@pytest.mark.parametrize("location", LOCATIONS)
async def test_foreign_token_without_jti_refused_in_every_location(
    node: tuple[Quart, RevSync], location: str
) -> None:
    app, _ = node
    for path in ("/protected", "/optional", "/v4-optional"):
        token = minted(identity="alice", exp=soon())
        assert await send(app, path, **carried(location, token)) == NO_JTI, path


@pytest.mark.parametrize("location", LOCATIONS)
async def test_foreign_token_without_exp_or_iat_refused_in_every_location(
    node: tuple[Quart, RevSync], location: str
) -> None:
    app, _ = node
    token = minted(identity="alice", jti="a-1")
    for path in ("/protected", "/optional", "/fresh"):
        assert await send(app, path, **carried(location, token)) == NEVER_BOUNDED, path


@pytest.mark.parametrize("location", LOCATIONS)
async def test_foreign_token_accepted_then_revoked_in_every_location(
    node: tuple[Quart, RevSync], location: str
) -> None:
    app, revsync = node
    token = minted(identity="alice", jti=f"a-{location}", exp=soon())
    assert await send(app, **carried(location, token)) == ok()
    await revsync.revoke(pyjwt.decode(token, SECRET, algorithms=["HS256"]))
    assert await send(app, **carried(location, token)) == REVOKED
    assert await send(app, "/optional", **carried(location, token)) == REVOKED


@pytest.mark.parametrize("location", LOCATIONS)
async def test_logged_out_everywhere_without_iat_in_every_location(
    node: tuple[Quart, RevSync], location: str
) -> None:
    app, revsync = node
    token = minted(identity="alice", jti="a-2", exp=soon())
    await revsync.revoke_identity("alice")
    assert await send(app, **carried(location, token)) == REVOKED


@pytest.mark.parametrize("location", LOCATIONS)
async def test_foreign_token_refused_while_the_node_cannot_judge(
    tmp_path: Path, location: str
) -> None:
    # RevSync set up but never started: the check cannot be made, so 503, not 200.
    app, _ = build_app(JWT_BLACKLIST_ENABLED=True, JWT_TOKEN_LOCATION=LOCATIONS)
    RevSync(app, redis_url="memory://", store_url=f"sqlite:///{tmp_path}/r.db")
    token = minted(identity="alice", jti="a-3", exp=soon())
    status, body = await send(app, **carried(location, token))
    assert status == 503, body
    assert "never started" in body["msg"]


# -- refresh routes: a missing type means access ---------------------------------------


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize("path", ["/refresh", "/refresh-called", "/v4-refresh"])
async def test_untyped_foreign_token_never_passes_a_refresh_route(
    node: tuple[Quart, RevSync], location: str, path: str
) -> None:
    app, _ = node
    for claims in (
        {"identity": "alice", "jti": "r-1", "exp": soon()},
        {"identity": "alice"},
        {"identity": "alice", "fresh": True, "jti": "r-2", "iat": int(time.time())},
    ):
        kwargs = carried(location, minted(**claims), kind="refresh")
        assert await send(app, path, **kwargs) == ONLY_REFRESH, claims


@pytest.mark.parametrize("location", LOCATIONS)
async def test_foreign_refresh_token_checked_like_any_other(
    node: tuple[Quart, RevSync], location: str
) -> None:
    app, revsync = node
    kwargs = carried(location, minted(identity="alice", type="refresh"), kind="refresh")
    assert await send(app, "/refresh", **kwargs) == NO_JTI
    kwargs = carried(location, minted(identity="a", type="refresh", jti="r-3"), kind="refresh")
    assert await send(app, "/refresh", **kwargs) == NEVER_BOUNDED
    token = minted(identity="alice", type="refresh", jti=f"r-{location}", exp=soon())
    kwargs = carried(location, token, kind="refresh")
    assert await send(app, "/refresh", **kwargs) == ok(kind="refresh")
    # A refresh token is never an access token, whatever else it carries.
    assert await send(app, "/protected", **carried(location, token)) == ONLY_ACCESS
    await revsync.revoke(pyjwt.decode(token, SECRET, algorithms=["HS256"]))
    assert await send(app, "/refresh", **kwargs) == REVOKED


# -- fresh routes: a missing fresh means not fresh -------------------------------------


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize("path", ["/fresh", "/fresh-called", "/v4-fresh"])
async def test_foreign_token_without_fresh_is_not_fresh(
    node: tuple[Quart, RevSync], location: str, path: str
) -> None:
    app, _ = node
    token = minted(identity="alice", jti="f-1", exp=soon())
    assert await send(app, path, **carried(location, token)) == NOT_FRESH
    fresh = minted(identity="alice", jti="f-2", exp=soon(), fresh=True)
    assert await send(app, path, **carried(location, fresh)) == ok()
    past = minted(identity="alice", jti="f-3", exp=soon(), fresh=int(time.time()) - 1)
    assert await send(app, path, **carried(location, past)) == NOT_FRESH


async def test_revoked_foreign_token_is_refused_before_freshness(
    node: tuple[Quart, RevSync],
) -> None:
    app, revsync = node
    token = minted(identity="alice", jti="f-4", exp=soon())
    await revsync.revoke_jti("f-4", soon())
    # Revoked wins over "not fresh": the client must not be told to merely re-login.
    assert await send(app, "/fresh", **carried("headers", token)) == REVOKED


# -- cookies and CSRF ------------------------------------------------------------------


def cookie_app(**config: Any) -> Quart:
    config.setdefault("JWT_TOKEN_LOCATION", ["cookies"])
    app, _ = build_app(**config)
    return app


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_foreign_cookie_without_csrf_claim_cannot_bypass_csrf(method: str) -> None:
    app = cookie_app()
    app.add_url_rule(
        "/write",
        view_func=app.view_functions["protected"],
        methods=["PUT", "PATCH", "DELETE"],
        endpoint="write",
    )
    path = "/protected" if method == "POST" else "/write"
    cookies = {"access_token_cookie": minted(identity="alice", jti="c-1", exp=soon())}
    # A GET first: the token passes (no CSRF on GET) and lands in the verified cache;
    # the write below must still be compared with its (missing) csrf claim.
    assert await send(app, "/protected", cookies=cookies) == ok()
    # No double-submit value: refused as for any cookie token.
    assert await send(app, path, method=method, cookies=cookies) == MISSING_CSRF
    # A value, but the token has nothing to compare it with: refused, never waved through.
    for value in ("anything", "", " ", "null", "None"):
        headers = {"X-CSRF-TOKEN": value}
        status, body = await send(app, path, method=method, cookies=cookies, headers=headers)
        assert (status, body) in (MISSING_CSRF, NO_CSRF_CLAIM), (value, status, body)


async def test_foreign_cookie_without_csrf_claim_refused_by_the_form_field() -> None:
    app = cookie_app(JWT_CSRF_CHECK_FORM=True)
    cookies = {"access_token_cookie": minted(identity="alice", jti="c-2", exp=soon())}
    assert await send(app, "/protected", method="POST", cookies=cookies, form={"x": "1"}) == (
        MISSING_CSRF
    )
    sent = await send(app, "/protected", method="POST", cookies=cookies, form={"csrf_token": "v"})
    assert sent == NO_CSRF_CLAIM


@pytest.mark.parametrize("claim", [5, 0, True, None, [], ["v"], {"v": 1}, ""])
async def test_csrf_claim_of_an_odd_type_never_matches(claim: Any) -> None:
    app = cookie_app()
    cookies = {"access_token_cookie": minted(identity="alice", jti="c-3", exp=soon(), csrf=claim)}
    for value in ("5", "0", "true", "null", "[]", '["v"]', "v", "''"):
        headers = {"X-CSRF-TOKEN": value}
        status, body = await send(
            app, "/protected", method="POST", cookies=cookies, headers=headers
        )
        assert status in (401, 422), (claim, value, status, body)


async def test_foreign_cookie_with_a_csrf_claim_works_as_the_original() -> None:
    app = cookie_app()
    cookies = {"access_token_cookie": minted(identity="alice", jti="c-4", exp=soon(), csrf="v")}
    sent = await send(
        app, "/protected", method="POST", cookies=cookies, headers={"X-CSRF-TOKEN": "v"}
    )
    assert sent == ok()
    assert (
        await send(app, "/protected", method="POST", cookies=cookies, headers={"X-CSRF-TOKEN": "w"})
        == MISMATCH
    )
    # Characters outside ASCII in the header are compared, not a server error.
    assert (
        await send(
            app, "/protected", method="POST", cookies=cookies, headers={"X-CSRF-TOKEN": "vé"}
        )
        == MISMATCH
    )


async def test_foreign_cookie_on_a_safe_method_needs_no_csrf() -> None:
    # As in quart-jwt-extended: GET is not a CSRF method, so no double submit is asked.
    app = cookie_app()
    cookies = {"access_token_cookie": minted(identity="alice", jti="c-5", exp=soon())}
    assert await send(app, "/protected", cookies=cookies) == ok()


async def test_lower_case_csrf_methods_still_protect_a_foreign_cookie() -> None:
    app = cookie_app(JWT_CSRF_METHODS=["post"])
    cookies = {"access_token_cookie": minted(identity="alice", jti="c-6", exp=soon())}
    assert await send(app, "/protected", method="POST", cookies=cookies) == MISSING_CSRF


async def test_without_csrf_protection_a_foreign_cookie_is_accepted() -> None:
    # JWT_COOKIE_CSRF_PROTECT=False: the app chose no double submit; as the original.
    app = cookie_app(JWT_COOKIE_CSRF_PROTECT=False)
    cookies = {"access_token_cookie": minted(identity="alice", jti="c-7", exp=soon())}
    assert await send(app, "/protected", method="POST", cookies=cookies) == ok()
    headers = {"X-CSRF-TOKEN": "ignored"}
    assert await send(app, "/protected", method="POST", cookies=cookies, headers=headers) == ok()


async def test_without_csrf_protection_revocation_still_applies_to_cookies(
    tmp_path: Path,
) -> None:
    app = cookie_app(JWT_COOKIE_CSRF_PROTECT=False, JWT_BLACKLIST_ENABLED=True)
    revsync = RevSync(app, redis_url="memory://", store_url=f"sqlite:///{tmp_path}/r.db")
    async with app.test_app():
        for claims, answer in (
            ({"identity": "alice", "exp": soon()}, NO_JTI),
            ({"identity": "alice", "jti": "c-8"}, NEVER_BOUNDED),
        ):
            cookies = {"access_token_cookie": minted(**claims)}
            assert await send(app, "/protected", method="POST", cookies=cookies) == answer
        token = minted(identity="alice", jti="c-9", exp=soon())
        cookies = {"access_token_cookie": token}
        assert await send(app, "/protected", method="POST", cookies=cookies) == ok()
        await revsync.revoke_jti("c-9", soon())
        assert await send(app, "/protected", method="POST", cookies=cookies) == REVOKED


async def test_refresh_cookie_without_csrf_claim_cannot_refresh() -> None:
    app = cookie_app()
    token = minted(identity="alice", type="refresh", jti="c-10", exp=soon())
    cookies = {"refresh_token_cookie": token}
    assert await send(app, "/refresh", method="POST", cookies=cookies) == MISSING_CSRF
    headers = {"X-CSRF-TOKEN": "v"}
    assert await send(app, "/refresh", method="POST", cookies=cookies, headers=headers) == (
        NO_CSRF_CLAIM
    )


async def test_invalid_cookie_is_not_skipped_for_a_valid_header() -> None:
    # cookies first: a foreign cookie that fails CSRF is refused, not passed over for
    # the header behind it.
    app = cookie_app(JWT_TOKEN_LOCATION=["cookies", "headers"])
    cookies = {"access_token_cookie": minted(identity="mallory", jti="c-11", exp=soon())}
    async with app.app_context():
        good = create_access_token("alice")
    headers = {"Authorization": f"Bearer {good}", "X-CSRF-TOKEN": "x"}
    assert await send(app, "/protected", method="POST", cookies=cookies, headers=headers) == (
        NO_CSRF_CLAIM
    )


async def test_setting_cookies_from_a_foreign_token_is_a_clean_refusal() -> None:
    app = cookie_app()

    @app.post("/adopt/<kind>")
    async def adopt(kind: str) -> Response:
        token = (await request.get_json())["token"]
        response = jsonify(adopted=True)
        if kind == "access":
            set_access_cookies(response, token)
        else:
            set_refresh_cookies(response, token)
        return response

    no_csrf = minted(identity="alice", jti="c-12", exp=soon())
    for kind in ("access", "refresh"):
        for token in (no_csrf, "not-a-jwt", minted(identity="a", csrf=5)):
            status, body = await send(app, f"/adopt/{kind}", method="POST", json={"token": token})
            assert status == 422, (kind, token, status, body)


# -- query string, JSON body, header: shapes of the carrier ------------------------------


async def test_repeated_query_parameter_uses_the_first_and_never_skips_it(
    node: tuple[Quart, RevSync],
) -> None:
    app, _ = node
    good = minted(identity="alice", jti="q-1", exp=soon())
    bad = minted(identity="mallory", exp=soon())  # no jti: cannot be checked
    assert await send(app, query_string=[("jwt", bad), ("jwt", good)]) == NO_JTI
    assert await send(app, query_string=[("jwt", good), ("jwt", bad)]) == ok()


@pytest.mark.parametrize("value", [{"identity": "alice"}, ["token"], 5, None, True])
async def test_json_token_that_is_not_a_string_is_invalid(
    node: tuple[Quart, RevSync], value: Any
) -> None:
    app, _ = node
    status, body = await send(app, method="POST", json={"access_token": value})
    if value is None:
        # quart-jwt-extended finds no token there either; the header then is missing.
        assert status in (401, 422), body
    else:
        assert status == 422, (value, body)


async def test_header_with_two_bearer_tokens_uses_the_first(node: tuple[Quart, RevSync]) -> None:
    app, _ = node
    good = minted(identity="alice", jti="h-1", exp=soon())
    bad = minted(identity="mallory", jti="h-2")  # neither exp nor iat
    headers = {"Authorization": f"Bearer {bad}, Bearer {good}"}
    assert await send(app, headers=headers) == NEVER_BOUNDED
    headers = {"Authorization": f"Basic dXNlcjpwdw==, Bearer {good}"}
    assert await send(app, headers=headers) == ok()


# -- allowlist mode: a token the registry never issued ---------------------------------


@pytest.fixture
async def allowlist(tmp_path: Path) -> AsyncIterator[tuple[Quart, RevSync]]:
    app, _ = build_app(JWT_BLACKLIST_ENABLED=True, JWT_TOKEN_LOCATION=LOCATIONS)
    revsync = RevSync(
        app,
        redis_url="memory://",
        store_url=f"sqlite:///{tmp_path}/r.db",
        track_tokens=True,
        mode="allowlist",
        allowlist_wait=0.2,
    )
    async with app.test_app():
        yield app, revsync


@pytest.mark.parametrize("location", LOCATIONS)
async def test_allowlist_refuses_every_foreign_token(
    allowlist: tuple[Quart, RevSync], location: str
) -> None:
    app, _ = allowlist
    for claims in (
        {"identity": "alice", "jti": "w-1", "exp": soon()},
        {"identity": "alice", "jti": "w-2", "iat": int(time.time()), "type": "access"},
        {"identity": "alice", "jti": "w-3", "exp": soon(), "rsq": True},
        {"identity": "alice", "jti": "w-4", "exp": soon(), "rsq": "1"},
        {"identity": "alice", "jti": "w-5", "exp": soon(), "rsq": 0},
        # Claims a registration the node has not read yet: a bounded wait, then refused.
        {"identity": "alice", "jti": "w-6", "exp": soon(), "rsq": 10**30},
    ):
        assert await send(app, **carried(location, minted(**claims))) == REVOKED, claims
    assert await send(app, **carried(location, minted(identity="alice"))) == NO_JTI


@pytest.mark.parametrize("shape", ["{t}, ", ", {t}", "Basic x,, Bearer {t}", " , Bearer {t} ,"])
async def test_header_with_empty_fields_is_read_not_a_server_error(
    node: tuple[Quart, RevSync], shape: str
) -> None:
    # quart-jwt-extended's split() of an empty field raised IndexError: a 500.
    app, _ = node
    token = minted(identity="alice", jti="h-3", exp=soon())
    value = shape.format(t=f"Bearer {token}" if "Bearer" not in shape else token)
    assert await send(app, headers={"Authorization": value}) == ok()
    for bad in (",", " , ", ",,", "Bearer", f"Bearer {token} extra"):
        status, body = await send(app, headers={"Authorization": bad})
        assert status == 422, (bad, body)
        assert body["msg"] == "Bad Authorization header. Expected value 'Bearer <JWT>'"
