"""Tokens minted elsewhere (another service, a test) with only some claims (issue 14).

quart-jwt-extended needs only the identity claim: a missing type reads as "access",
a missing fresh as False, and jti, iat and exp are optional.  revsync does the same,
except where a check it owes cannot be made (fail safe): under a revocation check, no
jti, or neither exp nor iat, is refused; no iat for an identity that was logged out
everywhere is refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from quart import Quart

from revsync import RevSync
from revsync.jwt import create_access_token, create_refresh_token
from tests.jwt.conftest import SECRET, AppFactory, build_app, call

NO_JTI = (422, {"msg": "Token has no jti claim, so its revocation cannot be checked"})
NEVER_BOUNDED = (
    422,
    {
        "msg": "Token has no exp and no iat claim, so its revocation cannot be checked "
        "(it never expires and tells no issue time)"
    },
)


def soon() -> int:
    """An exp a minute from now."""
    return int(time.time()) + 60


def minted(**claims: Any) -> str:
    """A token signed with the app's key carrying exactly ``claims``."""
    return pyjwt.encode(claims, SECRET, algorithm="HS256")


def describe(identity: str = "alice", kind: str = "access") -> tuple[int, Any]:
    return 200, {"identity": identity, "claims": {}, "type": kind, "kid": None, "user": None}


# -- without revocation ---------------------------------------------------------------


async def test_identity_alone_is_an_access_token(make_app: AppFactory) -> None:
    app, _ = make_app()
    token = minted(identity="alice")
    assert await call(app, "/protected", token) == describe()
    # Not fresh: fresh reads as False.
    assert await call(app, "/fresh", token) == (401, {"msg": "Fresh token required"})
    assert await call(app, "/refresh", token) == (422, {"msg": "Only refresh tokens are allowed"})


async def test_explicit_fresh_and_refresh_type(make_app: AppFactory) -> None:
    app, _ = make_app()
    assert (await call(app, "/fresh", minted(identity="alice", fresh=True)))[0] == 200
    assert await call(app, "/refresh", minted(identity="alice", type="refresh")) == describe(
        kind="refresh"
    )


async def test_identity_claim_is_checked_first(make_app: AppFactory) -> None:
    app, _ = make_app()
    # Even before the type: quart-jwt-extended's order.
    assert await call(app, "/protected", minted(type="id", sub="alice")) == (
        422,
        {"msg": "Missing claim: identity"},
    )
    assert await call(app, "/protected", minted()) == (422, {"msg": "Missing claim: identity"})


async def test_identity_claim_name_follows_the_setting(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_IDENTITY_CLAIM="sub")
    assert await call(app, "/protected", minted(identity="alice")) == (
        422,
        {"msg": "Missing claim: sub"},
    )
    assert (await call(app, "/protected", minted(sub="alice")))[0] == 200


async def test_unknown_type_still_refused(make_app: AppFactory) -> None:
    app, _ = make_app()
    assert await call(app, "/protected", minted(identity="alice", type="id")) == (
        422,
        {"msg": "Missing or invalid claim: type"},
    )


async def test_no_exp_never_expires_but_a_past_exp_does(make_app: AppFactory) -> None:
    app, _ = make_app()
    assert await call(app, "/protected", minted(identity="alice", iat=int(time.time()))) == (
        describe()
    )
    expired = minted(identity="alice", exp=int(time.time()) - 10)
    assert await call(app, "/protected", expired) == (401, {"msg": "Token has expired"})


async def test_without_jti_accepted_when_no_revocation_check_applies(
    make_app: AppFactory,
) -> None:
    off, _ = make_app()
    assert await call(off, "/protected", minted(identity="alice")) == describe()
    # Enabled, but only refresh tokens are checked: an access token passes.
    refresh_only, manager = make_app(
        JWT_BLACKLIST_ENABLED=True, JWT_BLACKLIST_TOKEN_CHECKS=["refresh"]
    )
    manager.token_in_blacklist_loader(lambda claims: False)
    assert await call(refresh_only, "/protected", minted(identity="alice")) == describe()
    assert await call(refresh_only, "/refresh", minted(identity="a", type="refresh")) == NO_JTI


async def test_without_jti_refused_by_a_denylist_check(make_app: AppFactory) -> None:
    app, manager = make_app(JWT_BLACKLIST_ENABLED=True)
    seen: list[Any] = []
    manager.token_in_blacklist_loader(seen.append)
    assert await call(app, "/protected", minted(identity="alice")) == NO_JTI
    assert seen == []  # refused before the loader: it could not have judged it
    assert (await call(app, "/protected", minted(identity="alice", jti="j-1", exp=soon())))[
        0
    ] == 200
    assert seen[0]["jti"] == "j-1"


async def test_invalid_claims_still_refused(make_app: AppFactory) -> None:
    app, _ = make_app()
    assert await call(app, "/protected", minted(identity="alice", jti=7)) == (
        422,
        {"msg": "JWT ID must be a string"},
    )
    assert await call(app, "/protected", minted(identity="alice", iat="now")) == (
        422,
        {"msg": "Issued At claim (iat) must be an integer."},
    )
    future = minted(identity="alice", iat=int(time.time()) + 3600)
    assert await call(app, "/protected", future) == (
        422,
        {"msg": "The token is not yet valid (iat)"},
    )
    forged = pyjwt.encode({"identity": "alice"}, "another-secret-of-at-least-32-bytes!!")
    assert await call(app, "/protected", forged) == (
        422,
        {"msg": "Signature verification failed"},
    )
    unsigned = pyjwt.encode({"identity": "alice"}, None, algorithm="none")
    assert await call(app, "/protected", unsigned) == (
        422,
        {"msg": "The specified alg value is not allowed"},
    )


async def test_cached_token_without_iat_or_exp_passes_again(make_app: AppFactory) -> None:
    app, _ = make_app()
    token = minted(identity="alice")
    for _ in range(3):  # the second and third hit the verified-token cache
        assert await call(app, "/protected", token) == describe()


async def test_audience_and_issuer(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_DECODE_AUDIENCE="api", JWT_DECODE_ISSUER="issuer-a")
    right = {"identity": "alice", "aud": "api", "iss": "issuer-a"}
    assert await call(app, "/protected", minted(**right)) == describe()
    cases = {
        "wrong aud": ({**right, "aud": "other"}, "Audience doesn't match"),
        "missing aud": (
            {"identity": "alice", "iss": "issuer-a"},
            'Token is missing the "aud" claim',
        ),
        "wrong iss": ({**right, "iss": "issuer-b"}, "Invalid issuer"),
        "missing iss": ({"identity": "alice", "aud": "api"}, 'Token is missing the "iss" claim'),
    }
    for name, (claims, message) in cases.items():
        assert await call(app, "/protected", minted(**claims)) == (422, {"msg": message}), name


async def test_audience_on_a_token_when_none_is_expected(make_app: AppFactory) -> None:
    app, _ = make_app()
    assert await call(app, "/protected", minted(identity="alice", aud="api")) == (
        422,
        {"msg": "Invalid audience"},
    )


# -- with RevSync ---------------------------------------------------------------------


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Quart, RevSync]]:
    app, _ = build_app(JWT_BLACKLIST_ENABLED=True)
    revsync = RevSync(app, redis_url="memory://", store_url=f"sqlite:///{tmp_path}/r.db")
    async with app.test_app():
        yield app, revsync


async def test_revsync_refuses_a_token_without_jti(node: tuple[Quart, RevSync]) -> None:
    app, revsync = node
    assert await call(app, "/protected", minted(identity="alice")) == NO_JTI
    assert revsync.is_revoked({"identity": "alice"}) is False  # no entry to match
    with pytest.raises(ValueError, match="without a jti"):
        await revsync.revoke({"identity": "alice", "exp": time.time() + 60})


async def test_revsync_jti_and_exp_without_iat(node: tuple[Quart, RevSync]) -> None:
    app, revsync = node
    token = minted(identity="alice", jti="j-1", exp=soon())
    assert await call(app, "/protected", token) == describe()
    await revsync.revoke(pyjwt.decode(token, SECRET, algorithms=["HS256"]))
    assert await call(app, "/protected", token) == (401, {"msg": "Token has been revoked"})


async def test_revsync_no_iat_refused_once_logged_out_everywhere(
    node: tuple[Quart, RevSync],
) -> None:
    app, revsync = node
    no_iat = minted(identity="alice", jti="j-1", exp=soon())
    other = minted(identity="bob", jti="j-2", exp=soon())
    assert (await call(app, "/protected", no_iat))[0] == 200
    await revsync.revoke_identity("alice")
    # No iat: read as issued before any cut-off, so refused (fail safe).
    assert await call(app, "/protected", no_iat) == (401, {"msg": "Token has been revoked"})
    assert revsync.is_revoked({"identity": "alice", "jti": "j-1"}) is True
    assert revsync.check_token({"identity": "alice", "jti": "j-1"}) is True
    # Another identity, without a cut-off, is unaffected; a later iat for alice passes.
    assert await call(app, "/protected", other) == describe("bob")
    await asyncio.sleep(0.01)
    later = minted(identity="alice", jti="j-3", iat=time.time())
    assert (await call(app, "/protected", later))[0] == 200


async def test_revsync_cutoff_ttl_check_tolerates_no_iat(tmp_path: Path) -> None:
    app, _ = build_app(JWT_BLACKLIST_ENABLED=True, JWT_ACCESS_TOKEN_EXPIRES=False)
    revsync = RevSync(
        app, redis_url="memory://", store_url=f"sqlite:///{tmp_path}/r.db", cutoff_ttl=60
    )
    async with app.test_app():
        old = minted(identity="alice", jti="j-old", iat=int(time.time()) - 3600)
        assert await call(app, "/protected", old) == (401, {"msg": "Token has been revoked"})
        no_iat = minted(identity="alice", jti="j-1", exp=soon())
        assert await call(app, "/protected", no_iat) == describe()
        assert revsync.is_revoked({"identity": "alice", "jti": "j-1"}) is False


# -- neither exp nor iat: no revocation can bound it ----------------------------------


async def test_neither_exp_nor_iat_refused_under_a_revocation_check(
    make_app: AppFactory,
) -> None:
    app, manager = make_app(JWT_BLACKLIST_ENABLED=True)
    seen: list[Any] = []
    manager.token_in_blacklist_loader(seen.append)
    unbounded = minted(identity="alice", jti="j-1")
    assert await call(app, "/protected", unbounded) == NEVER_BOUNDED
    refresh = minted(identity="alice", jti="j-2", type="refresh")
    assert await call(app, "/refresh", refresh) == NEVER_BOUNDED
    assert seen == []  # refused before the loader
    # Either claim makes it checkable again.
    assert await call(app, "/protected", minted(identity="alice", jti="j-3", exp=soon())) == (
        describe()
    )
    dated = minted(identity="alice", jti="j-4", iat=int(time.time()))
    assert await call(app, "/protected", dated) == describe()
    assert [claims["jti"] for claims in seen] == ["j-3", "j-4"]


async def test_neither_exp_nor_iat_accepted_where_no_check_applies(
    make_app: AppFactory,
) -> None:
    off, _ = make_app()
    assert await call(off, "/protected", minted(identity="alice", jti="j-1")) == describe()
    access_only, manager = make_app(
        JWT_BLACKLIST_ENABLED=True, JWT_BLACKLIST_TOKEN_CHECKS=("access",)
    )
    manager.token_in_blacklist_loader(lambda claims: False)
    refresh = minted(identity="alice", jti="j-2", type="refresh")
    assert await call(access_only, "/refresh", refresh) == describe(kind="refresh")
    assert await call(access_only, "/protected", minted(identity="a", jti="j-3")) == (NEVER_BOUNDED)


async def test_non_expiring_tokens_of_the_app_itself_stay_accepted(tmp_path: Path) -> None:
    # JWT_ACCESS_TOKEN_EXPIRES=False: quart-jwt-extended's tokens carry no exp but an
    # iat, and so do revsync's; the cut-off still compares that iat.
    app, _ = build_app(
        JWT_BLACKLIST_ENABLED=True,
        JWT_ACCESS_TOKEN_EXPIRES=False,
        JWT_REFRESH_TOKEN_EXPIRES=False,
    )
    revsync = RevSync(app, redis_url="memory://", store_url=f"sqlite:///{tmp_path}/r.db")
    async with app.test_app():
        async with app.app_context():
            access = create_access_token("alice")
            refresh = create_refresh_token("alice")
        claims = pyjwt.decode(access, SECRET, algorithms=["HS256"])
        assert "exp" not in claims
        assert isinstance(claims["iat"], float)
        assert (await call(app, "/protected", access))[0] == 200
        assert (await call(app, "/refresh", refresh))[0] == 200
        await asyncio.sleep(0.01)
        await revsync.revoke_identity("alice")
        assert await call(app, "/protected", access) == (401, {"msg": "Token has been revoked"})
        assert await call(app, "/refresh", refresh) == (401, {"msg": "Token has been revoked"})
        # Nor does the rule touch a hand-made token that has an iat but no exp.
        await asyncio.sleep(0.01)
        later = minted(identity="alice", jti="j-9", iat=time.time())
        assert (await call(app, "/protected", later))[0] == 200


async def test_revsync_neither_exp_nor_iat_refused_before_and_after_a_cut_off(
    tmp_path: Path,
) -> None:
    # Before this rule such a token was refused only while its identity's cut-off row
    # was kept (REVSYNC_CUTOFF_TTL), and accepted again once it was pruned.
    app, _ = build_app(JWT_BLACKLIST_ENABLED=True)
    revsync = RevSync(
        app, redis_url="memory://", store_url=f"sqlite:///{tmp_path}/r.db", cutoff_ttl=1
    )
    async with app.test_app():
        unbounded = minted(identity="alice", jti="j-1")
        assert await call(app, "/protected", unbounded) == NEVER_BOUNDED
        await revsync.revoke_identity("alice")
        assert await call(app, "/protected", unbounded) == NEVER_BOUNDED
        revsync.revocations.sweep(time.time() + 3600)  # as an hour later
        assert revsync.revocations.identity_count == 0  # the cut-off is gone
        assert await call(app, "/protected", unbounded) == NEVER_BOUNDED
