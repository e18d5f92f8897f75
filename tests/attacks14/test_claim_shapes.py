"""Tokens signed with the app's key whose claims have odd JSON types (attack 14).

A service that shares the key may send any JSON in any claim; each probe asserts
the safe outcome over the real test client, with RevSync started.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from quart import Quart

from revsync import RevSync
from tests.jwt.conftest import SECRET, build_app, call

REVOKED = (401, {"msg": "Token has been revoked"})


def minted(**claims: Any) -> str:
    """A token signed with the app's key carrying exactly ``claims``."""
    return pyjwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Quart, RevSync]]:
    app, _ = build_app(JWT_BLACKLIST_ENABLED=True)
    revsync = RevSync(app, redis_url="memory://", store_url=f"sqlite:///{tmp_path}/r.db")
    async with app.test_app():
        yield app, revsync


@pytest.fixture
async def short_ttl(tmp_path: Path) -> AsyncIterator[tuple[Quart, RevSync]]:
    app, _ = build_app(JWT_BLACKLIST_ENABLED=True, JWT_ACCESS_TOKEN_EXPIRES=False)
    revsync = RevSync(
        app, redis_url="memory://", store_url=f"sqlite:///{tmp_path}/r.db", cutoff_ttl=60
    )
    async with app.test_app():
        yield app, revsync


# -- type ----------------------------------------------------------------------------


async def test_refresh_token_refused_on_access_routes(node: tuple[Quart, RevSync]) -> None:
    app, _ = node
    token = minted(identity="alice", jti="r-1", type="refresh")
    for path in ("/protected", "/fresh"):
        assert await call(app, path, token) == (422, {"msg": "Only access tokens are allowed"})


async def test_untyped_token_refused_on_refresh_route(node: tuple[Quart, RevSync]) -> None:
    app, _ = node
    token = minted(identity="alice", jti="a-1")
    assert await call(app, "/refresh", token) == (422, {"msg": "Only refresh tokens are allowed"})


@pytest.mark.parametrize(
    "kind", [None, ["access"], ["refresh"], 0, 1, True, {"access": 1}, "ACCESS", "access ", ""]
)
async def test_type_of_wrong_shape_refused(node: tuple[Quart, RevSync], kind: Any) -> None:
    app, _ = node
    token = minted(identity="alice", jti="t-1", type=kind)
    for path in ("/protected", "/refresh", "/fresh"):
        status, _body = await call(app, path, token)
        assert status == 422, (path, kind, status)


# -- jti -----------------------------------------------------------------------------


@pytest.mark.parametrize("jti", [5, 0, 1.5, True, False, [], ["j"], {"j": 1}])
async def test_unrevocable_jti_refused_under_a_revocation_check(
    node: tuple[Quart, RevSync], jti: Any
) -> None:
    """A jti that revsync's revoke() could never record must not pass the check."""
    app, _ = node
    status, _body = await call(app, "/protected", minted(identity="alice", jti=jti))
    assert status in (401, 422), (jti, status)


async def test_int_jti_not_a_way_around_its_string_revocation(
    node: tuple[Quart, RevSync],
) -> None:
    app, revsync = node
    exp = int(time.time()) + 60
    await revsync.revoke_jti("5", exp)
    assert await call(app, "/protected", minted(identity="alice", jti="5", exp=exp)) == REVOKED
    status, _body = await call(app, "/protected", minted(identity="alice", jti=5, exp=exp))
    assert status in (401, 422)


# -- iat -----------------------------------------------------------------------------


@pytest.mark.parametrize("iat", [1000, 1000.5, -(10**12)])
async def test_old_iat_of_any_shape_fails_the_cutoff_ttl_check(
    short_ttl: tuple[Quart, RevSync], iat: Any
) -> None:
    app, _ = short_ttl
    status, _body = await call(app, "/protected", minted(identity="alice", jti="i-1", iat=iat))
    assert status in (401, 422), (iat, status)


@pytest.mark.parametrize("iat", ["9999999999", 9999999999, 10**30, 1e300, None, [1], {}])
async def test_future_or_malformed_iat_refused(node: tuple[Quart, RevSync], iat: Any) -> None:
    app, _ = node
    status, _body = await call(app, "/protected", minted(identity="alice", jti="i-2", iat=iat))
    assert status in (401, 422), (iat, status)


@pytest.mark.parametrize("iat", ["now", "1000", True, None, [], {}])
async def test_iat_shape_does_not_dodge_log_out_everywhere(
    node: tuple[Quart, RevSync], iat: Any
) -> None:
    app, revsync = node
    if iat == "now":
        iat = str(int(time.time()))
    await revsync.revoke_identity("alice")
    status, _body = await call(app, "/protected", minted(identity="alice", jti="i-3", iat=iat))
    assert status in (401, 422), (iat, status)


async def test_nan_and_infinite_iat_refused(node: tuple[Quart, RevSync]) -> None:
    app, revsync = node
    await revsync.revoke_identity("alice")
    for iat in (float("nan"), float("inf"), float("-inf")):
        status, _body = await call(app, "/protected", minted(identity="alice", jti="i-4", iat=iat))
        assert status in (401, 422), (iat, status)


# -- fresh ---------------------------------------------------------------------------


@pytest.mark.parametrize("fresh", ["false", "true", "1", 1, 0, 1.0, [True], {"a": 1}, None])
async def test_fresh_of_wrong_shape_is_not_fresh(node: tuple[Quart, RevSync], fresh: Any) -> None:
    app, _ = node
    token = minted(identity="alice", jti="f-1", fresh=fresh, exp=int(time.time()) + 60)
    assert await call(app, "/fresh", token) == (401, {"msg": "Fresh token required"})


async def test_fresh_on_an_untyped_refresh_shape_is_not_fresh(
    node: tuple[Quart, RevSync],
) -> None:
    app, _ = node
    token = minted(identity="alice", jti="f-2", type="refresh", fresh=True)
    status, _body = await call(app, "/fresh", token)
    assert status == 422


# -- identity ------------------------------------------------------------------------


async def test_dict_identity_cut_off_whatever_the_key_order(node: tuple[Quart, RevSync]) -> None:
    app, revsync = node
    await revsync.revoke_identity({"org": 1, "id": 7})
    token = minted(identity={"id": 7, "org": 1}, jti="d-1", iat=int(time.time()) - 5)
    assert await call(app, "/protected", token) == REVOKED


async def test_int_and_string_identity_share_a_cut_off(node: tuple[Quart, RevSync]) -> None:
    app, revsync = node
    await revsync.revoke_identity(7)
    for ident in (7, "7"):
        token = minted(identity=ident, jti="d-2", iat=int(time.time()) - 5)
        assert await call(app, "/protected", token) == REVOKED


@pytest.mark.parametrize("identity", [None, [], {}, ""])
async def test_empty_identity_no_server_error(node: tuple[Quart, RevSync], identity: Any) -> None:
    app, _ = node
    status, _body = await call(app, "/protected", minted(identity=identity, jti="n-1"))
    assert status < 500


# -- exp -----------------------------------------------------------------------------


@pytest.mark.parametrize("exp", [None, "soon", [], {}, float("nan"), float("inf")])
async def test_malformed_exp_refused(node: tuple[Quart, RevSync], exp: Any) -> None:
    app, _ = node
    token = minted(identity="alice", jti="e-1", exp=exp)
    for _ in range(2):  # the second pass may come from the verified cache
        status, _body = await call(app, "/protected", token)
        assert status == 422, (exp, status)


@pytest.mark.parametrize("exp", ["1000", True, False, 0, -1])
async def test_past_exp_of_any_shape_expired(node: tuple[Quart, RevSync], exp: Any) -> None:
    app, _ = node
    token = minted(identity="alice", jti="e-2", exp=exp)
    status, _body = await call(app, "/protected", token)
    assert status in (401, 422), (exp, status)


# -- found by the attack round, refused since -------------------------------------------


@pytest.mark.parametrize("jti", ["", "x" * 5000])
async def test_a_jti_no_revocation_can_name_is_refused(
    node: tuple[Quart, RevSync], jti: str
) -> None:
    # revoke_jti refuses "" and jtis over 512 characters: such a token could never be
    # revoked on its own, so it must not pass a revocation check.
    app, _ = node
    status, body = await call(app, "/protected", minted(identity="alice", jti=jti))
    assert status == 422, body
    assert "jti" in body["msg"]


@pytest.mark.parametrize("iat", ["1000", "0", True, False])
async def test_an_iat_that_is_not_a_number_is_refused(
    short_ttl: tuple[Quart, RevSync], iat: object
) -> None:
    # PyJWT reads "1000" and true as numbers; revsync's age check did not, so they
    # slipped past REVSYNC_CUTOFF_TTL.
    app, _ = short_ttl
    token = minted(identity="alice", jti="i-1", iat=iat)
    assert await call(app, "/protected", token) == (
        422,
        {"msg": "Invalid claim: iat must be a number"},
    )


async def test_an_exp_that_is_not_a_number_is_refused(node: tuple[Quart, RevSync]) -> None:
    # Accepted before, and then revoke(claims) raised: a logout could not end it.
    app, _ = node
    token = minted(identity="alice", jti="e-3", exp=str(int(time.time()) + 600))
    assert await call(app, "/protected", token) == (
        422,
        {"msg": "Invalid claim: exp must be a number"},
    )
