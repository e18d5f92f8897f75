"""A token accepted under a revocation check must be one a revocation can end (attack 14).

Found by the second round: tokens minted with the app's key whose exp lay beyond
what a revocation records (1e15), whose jti held a lone surrogate, or whose identity
was too long (a big dict, a 600-character string, a 600-digit number) or not valid
text were accepted, yet ``revoke(claims)`` raised and ``revoke_identity`` could not
name them: a logout or "log out everywhere" could never end them.  Each is now
refused with 422 saying why, and RevSync refuses to mint such a token.

The invariant each probe asserts: a token is either refused, or accepted and then
ended both by ``revoke(claims)`` and by ``revoke_identity``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from quart import Quart

from revsync import RevSync
from revsync.events import MAX_KEY_CHARS, MAX_TIME
from revsync.jwt import create_access_token
from revsync.jwt.manager import MAX_EXP, MAX_JTI_CHARS
from tests.jwt.conftest import SECRET, build_app, call

REVOKED = (401, {"msg": "Token has been revoked"})
UNRECORDABLE = (
    422,
    {
        "msg": "Token cannot be revoked, so its revocation cannot be checked: its identity "
        "claim is too long, or not valid text, for a revocation to record"
    },
)
INVALID_JTI = (422, {"msg": "Token has an invalid jti claim (1 to 512 characters of text)"})


def signed_json(payload: str) -> str:
    """A token whose payload is exactly this JSON text (lone surrogates, NaN...)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(payload.encode())
    mac = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def soon() -> int:
    return int(time.time()) + 600


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Quart, RevSync]]:
    app, _ = build_app(JWT_BLACKLIST_ENABLED=True)
    revsync = RevSync(app, redis_url="memory://", store_url=f"sqlite:///{tmp_path}/r.db")
    async with app.test_app():
        yield app, revsync


def test_the_jwt_layer_limits_are_revsyncs() -> None:
    # The JWT layer imports nothing of the engine, so it keeps its own copies.
    assert MAX_EXP == MAX_TIME
    assert MAX_JTI_CHARS == MAX_KEY_CHARS


# -- refused: what no revocation can record ---------------------------------------------


@pytest.mark.parametrize("exp", [MAX_EXP + 1, 10**18, 2**63, 10**30, 1e300])
async def test_exp_beyond_what_a_revocation_records_is_refused(
    node: tuple[Quart, RevSync], exp: float
) -> None:
    app, _ = node
    token = pyjwt.encode({"identity": "alice", "jti": "e-1", "exp": exp}, SECRET)
    assert await call(app, "/protected", token) == (
        422,
        {"msg": f"Token has an exp claim later than a revocation can record ({MAX_EXP})"},
    )


async def test_exp_beyond_the_limit_refused_under_any_loader() -> None:
    app, manager = build_app(JWT_BLACKLIST_ENABLED=True)
    manager.token_in_blacklist_loader(lambda claims: False)
    token = pyjwt.encode({"identity": "alice", "jti": "e-2", "exp": 10**18}, SECRET)
    assert (await call(app, "/protected", token))[0] == 422
    # Without a revocation check, a far exp is the token's own business (as before).
    free, _ = build_app()
    assert (await call(free, "/protected", token))[0] == 200


async def test_jti_with_a_lone_surrogate_is_refused(node: tuple[Quart, RevSync]) -> None:
    app, _ = node
    token = signed_json(f'{{"identity": "alice", "jti": "a\\ud800", "exp": {soon()}}}')
    assert await call(app, "/protected", token) == (
        422,
        {"msg": f"Token has an invalid jti claim (1 to {MAX_JTI_CHARS} characters of text)"},
    )


UNNAMEABLE_IDENTITIES = {
    "600 characters": json.dumps("a" * 600),
    "a big object": json.dumps({f"k{i}": i for i in range(100)}),
    "600 digits": "1" * 600,
    "deeply nested": "[" * 300 + "]" * 300,
    "lone surrogate": '"al\\ud800"',
    "512 emoji (too many bytes)": json.dumps("\U0001f600" * 512),
    "empty string": '""',
}


@pytest.mark.parametrize(
    "identity", list(UNNAMEABLE_IDENTITIES.values()), ids=list(UNNAMEABLE_IDENTITIES)
)
async def test_identity_no_revocation_can_name_is_refused(
    node: tuple[Quart, RevSync], identity: str
) -> None:
    app, _ = node
    token = signed_json(f'{{"identity": {identity}, "jti": "i-1", "exp": {soon()}}}')
    assert await call(app, "/protected", token) == UNRECORDABLE


async def test_revsync_refuses_to_mint_a_token_it_could_not_revoke(
    node: tuple[Quart, RevSync],
) -> None:
    app, _ = node
    async with app.app_context():
        with pytest.raises(ValueError, match=r"could never be revoked: .*longer than 512"):
            create_access_token("a" * 600)
        with pytest.raises(ValueError, match="could never be revoked"):
            create_access_token({f"k{i}": i for i in range(100)})
        token = create_access_token("a" * 400)  # long, but it fits
    assert (await call(app, "/protected", token))[0] == 200


# -- the invariant: refused, or ended by both kinds of revocation -----------------------

ODD_TOKENS = {
    "email": {"identity": "alice@example.com"},
    "int": {"identity": 42},
    "negative int": {"identity": -(10**17)},
    "18-digit int": {"identity": 10**18 + 7},
    "float": {"identity": 1.5},
    "bool": {"identity": True},
    "small dict": {"identity": {"org": 1, "id": 7}},
    "list": {"identity": ["a", "b"]},
    "accents": {"identity": "José García"},
    "emoji": {"identity": "\U0001f600" * 100},
    "400 ascii": {"identity": "a" * 400},
    "512 ascii": {"identity": "a" * 512},
    "512 quotes": {"identity": '"' * 512},
    "512 control chars": {"identity": "\x01" * 512},
    "newline": {"identity": "a\nb"},
    "long jti and identity": {"identity": "b" * 480, "jti": "j" * 512},
    "control jti": {"identity": "alice", "jti": "\x00\x01"},
    "exp at the limit": {"identity": "alice", "exp": MAX_EXP},
}


@pytest.mark.parametrize("claims", list(ODD_TOKENS.values()), ids=list(ODD_TOKENS))
async def test_accepted_only_if_both_revocations_can_end_it(
    node: tuple[Quart, RevSync], claims: dict[str, Any]
) -> None:
    app, revsync = node
    token = pyjwt.encode({"jti": "o-1", "exp": soon(), **claims}, SECRET)
    status, body = await call(app, "/protected", token)
    if status != 200:
        # A jti with a NUL (no PostgreSQL text holds one) is refused on every store.
        assert (status, body) in (UNRECORDABLE, INVALID_JTI)
        return
    decoded = pyjwt.decode(token, SECRET, algorithms=["HS256"])
    await revsync.revoke(decoded)
    assert await call(app, "/protected", token) == REVOKED
    await revsync.unrevoke(decoded["jti"])
    assert (await call(app, "/protected", token))[0] == 200
    await asyncio.sleep(0.002)  # a cut-off is at or after the token's iat: none here
    await revsync.revoke_identity(decoded["identity"])
    assert await call(app, "/protected", token) == REVOKED
