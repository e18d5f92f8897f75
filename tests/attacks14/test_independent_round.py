"""Issue 14, independent attack round: tokens a revocation could not end, settings that
quietly turned revocation off, and answers that were 500s.

Each test reproduces a probe that broke and is now fixed, or one that held where the
hold is worth keeping (marked "held").  Where revsync.jwt answers differently from
quart-jwt-extended 0.1.0 on purpose, docs/migration.md says so.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import socket
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from quart import Quart, jsonify

from revsync import RevSync, canonical_identity
from revsync.changes import Kind
from revsync.events import InvalidEvent
from revsync.jwt import JWTManager, create_access_token, get_raw_jwt, jwt_required
from revsync.stores.base import StoreError
from services.processes import Node, start_ready
from tests.jwt.conftest import SECRET, build_app, call
from tests.services.conftest import base_env

REVOKED = (401, {"msg": "Token has been revoked"})
NULL_IDENTITY = (
    422,
    {
        "msg": "Token has a null identity claim, so its revocation cannot be checked: no "
        '"log out everywhere" can name it'
    },
)
INVALID_JTI = (422, {"msg": "Token has an invalid jti claim (1 to 512 characters of text)"})
UNRECORDABLE = (
    422,
    {
        "msg": "Token cannot be revoked, so its revocation cannot be checked: its identity "
        "claim is too long, or not valid text, for a revocation to record"
    },
)


def token(key: str = SECRET, **claims: Any) -> str:
    """A token minted elsewhere with the app's key: a fresh jti, iat a second ago and a
    ten-minute exp, unless given (None leaves the claim out)."""
    now = time.time()
    payload = {"jti": str(uuid.uuid4()), "iat": now - 1, "exp": int(now) + 600, **claims}
    return pyjwt.encode({k: v for k, v in payload.items() if v is not None}, key)


def signed_json(payload: str) -> str:
    """A token whose payload is exactly this JSON text."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(b'{"alg":"HS256","typ":"JWT"}')
    body = b64(payload.encode())
    mac = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def revsync_app(tmp_path: Path, **config: Any) -> tuple[Quart, RevSync]:
    app, _ = build_app(JWT_BLACKLIST_ENABLED=True, **config)
    revsync = RevSync(app, redis_url="memory://", store_url=f"sqlite:///{tmp_path}/r.db")
    return app, revsync


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Quart, RevSync]]:
    app, revsync = revsync_app(tmp_path)
    async with app.test_app():
        yield app, revsync


# -- "log out everywhere" counts numbers by value ------------------------------------------
# A service that serialises user 1 as 1.0 (or True) mints tokens the app's own user loader
# reads as user 1 (users[1.0] is users[1]); the cut-off keyed "1" missed them.

SAME_IDENTITY = [
    (1, 1.0),
    (1, True),
    (0, False),
    (1.0, 1),
    ({"id": 1}, {"id": 1.0}),
    ({"id": 1, "roles": [True]}, {"roles": [1.0], "id": True}),
    (10**20, 1e20),
    (-5, -5.0),
]


@pytest.mark.parametrize(("logged_out", "presented"), SAME_IDENTITY)
async def test_a_cutoff_ends_the_tokens_of_every_json_form_of_the_identity(
    node: tuple[Quart, RevSync], logged_out: Any, presented: Any
) -> None:
    app, revsync = node
    assert logged_out == presented  # one identity, as Python (the app) compares it
    sibling = token(identity=presented)
    assert (await call(app, "/protected", sibling))[0] == 200
    await asyncio.sleep(0.002)
    await revsync.revoke_identity(logged_out)
    assert await call(app, "/protected", sibling) == REVOKED
    assert canonical_identity(logged_out) == canonical_identity(presented)


@pytest.mark.parametrize(
    ("one", "other"), [(1, 1.5), (1, [1]), ({"id": 1}, {"id": 2}), (1, "1.0"), (10**20 + 1, 1e20)]
)
async def test_different_identities_keep_different_keys(one: Any, other: Any) -> None:
    assert one != other
    assert canonical_identity(one) != canonical_identity(other)


async def test_an_identity_too_deep_to_walk_is_refused_not_a_500(
    node: tuple[Quart, RevSync],
) -> None:
    app, revsync = node
    await revsync.revoke_identity("someone")  # a cut-off exists: identities are looked up
    deep = "[" * 800 + "]" * 800
    now = int(time.time())
    nested = signed_json(f'{{"identity": {deep}, "jti": "d-1", "iat": {now}, "exp": {now + 60}}}')
    assert await call(app, "/protected", nested) == UNRECORDABLE


# -- a null identity: no "log out everywhere" can name it ----------------------------------


async def test_a_null_identity_is_refused_under_a_check(node: tuple[Quart, RevSync]) -> None:
    app, _ = node
    assert await call(app, "/protected", token(identity=None, extra=1)) == (
        422,
        {"msg": "Missing claim: identity"},
    )
    null = signed_json(f'{{"identity": null, "jti": "n-1", "exp": {int(time.time()) + 60}}}')
    assert await call(app, "/protected", null) == NULL_IDENTITY
    async with app.app_context():
        with pytest.raises(ValueError, match="identity is null"):
            create_access_token(identity=None)
    # Without a revocation check it is the token's own business, as in quart-jwt-extended.
    free, _ = build_app()
    assert (await call(free, "/protected", null))[0] == 200


# -- a jti or identity with a NUL: PostgreSQL's text cannot hold it -----------------------
# revoke() raised StoreError for such a token, every time, on PostgreSQL only: the logout
# answered 503 and the token stayed valid.  Now it is refused on every store.


async def test_a_nul_in_jti_or_identity_is_refused_on_every_store(
    node: tuple[Quart, RevSync],
) -> None:
    app, _ = node
    assert await call(app, "/protected", token(identity="alice", jti="a\x00b")) == INVALID_JTI
    assert await call(app, "/protected", token(identity="al\x00ice")) == UNRECORDABLE
    async with app.app_context():
        with pytest.raises(ValueError, match="NUL"):
            create_access_token(identity="al\x00ice")


async def _nul_writes_fail_before_the_store(url: str) -> None:
    app, _ = build_app(JWT_BLACKLIST_ENABLED=True)
    revsync = RevSync(app, redis_url="memory://", store_url=url)
    async with app.test_app():
        for write in (
            revsync.revoke_jti("a\x00b", time.time() + 60),
            revsync.revoke_jti("ok", time.time() + 60, identity="a\x00b"),
            revsync.revoke_identity("a\x00b"),
        ):
            with pytest.raises(InvalidEvent, match="NUL") as caught:
                await write
            assert not isinstance(caught.value, StoreError)
        assert await revsync.store.head() == 0  # nothing was written


async def test_writing_a_nul_fails_before_the_store_sqlite(tmp_path: Path) -> None:
    await _nul_writes_fail_before_the_store(f"sqlite:///{tmp_path}/r.db")


async def test_writing_a_nul_fails_before_the_store_postgres(postgres_schema_url: str) -> None:
    await _nul_writes_fail_before_the_store(postgres_schema_url)


# -- JWT settings changed after RevSync read them -------------------------------------------
# RevSync read JWT_IDENTITY_CLAIM and JWT_DECODE_LEEWAY once, in init_app; the JWT layer
# reads them live.  Set later, cut-offs looked at the wrong claim (revoke_identity ended
# nothing) and revocations were dropped while the leeway still accepted their tokens.


async def test_identity_claim_set_after_revsync_stops_start_up(tmp_path: Path) -> None:
    app, _ = revsync_app(tmp_path)
    app.config["JWT_IDENTITY_CLAIM"] = "sub"
    with pytest.raises(Exception, match=r"JWT_IDENTITY_CLAIM is 'sub'.*'identity'"):
        async with app.test_app():
            pass


async def test_identity_claim_changed_while_serving_is_never_accepted(
    node: tuple[Quart, RevSync],
) -> None:
    app, revsync = node
    mine = token(sub="alice")
    await revsync.revoke_identity("alice")
    app.config["JWT_IDENTITY_CLAIM"] = "sub"
    status, _ = await call(app, "/protected", mine)
    assert status == 500  # the SettingError naming the key, logged; never a 200
    app.config["JWT_IDENTITY_CLAIM"] = "identity"
    assert (await call(app, "/protected", token(identity="bob")))[0] == 200


async def test_decode_leeway_raised_after_revsync_stops_start_up(tmp_path: Path) -> None:
    app, _ = revsync_app(tmp_path)
    app.config["JWT_DECODE_LEEWAY"] = 3600
    with pytest.raises(Exception, match=r"JWT_DECODE_LEEWAY \(3600s\) is above REVSYNC_LEEWAY"):
        async with app.test_app():
            pass


async def test_a_leeway_set_before_revsync_still_keeps_revocations(tmp_path: Path) -> None:
    """Held: set first, REVSYNC_LEEWAY follows it and the revocation outlives the leeway."""
    app, revsync = revsync_app(tmp_path, JWT_DECODE_LEEWAY=3600)
    async with app.test_app():
        now = time.time()
        late = {"identity": "bob", "jti": "l-1", "iat": now - 50, "exp": int(now) - 10}
        raw = pyjwt.encode(late, SECRET)
        assert (await call(app, "/protected", raw))[0] == 200  # within the leeway
        await revsync.revoke(late)
        assert await call(app, "/protected", raw) == REVOKED


# -- the request path never answers 500 for a claim ------------------------------------------


async def test_an_iat_too_large_for_a_float_is_too_old_not_a_500(
    node: tuple[Quart, RevSync],
) -> None:
    app, _ = node
    assert await call(app, "/protected", token(identity="bob", iat=-(10**400))) == REVOKED


# -- tokens that never expire can be logged out ---------------------------------------------
# quart-jwt-extended's JWT_ACCESS_TOKEN_EXPIRES = False: revsync mints and accepts them,
# but revoke(get_raw_jwt()) raised ValueError (no exp): the logout was a 500 and the token
# stayed valid.  The revocation now lasts until iat + REVSYNC_CUTOFF_TTL, after which the
# age rule refuses the token anyway.


async def test_a_token_without_exp_can_be_logged_out(tmp_path: Path) -> None:
    app, revsync = revsync_app(tmp_path, JWT_ACCESS_TOKEN_EXPIRES=False)

    @app.post("/logout")
    @jwt_required
    async def logout() -> Any:
        change = await revsync.revoke(get_raw_jwt())
        return jsonify(expires_at=change.expires_at)

    async with app.test_app():
        async with app.app_context():
            forever = create_access_token("alice")
        claims = pyjwt.decode(forever, SECRET, algorithms=["HS256"])
        assert "exp" not in claims
        assert (await call(app, "/protected", forever))[0] == 200
        status, body = await call(app, "/logout", forever, method="POST")
        assert status == 200
        assert body["expires_at"] == pytest.approx(claims["iat"] + revsync.settings.cutoff_ttl)
        assert await call(app, "/protected", forever) == REVOKED
        # By claims too, in a batch; a token with neither exp nor iat still cannot be.
        other = {"jti": "f-2", "identity": "bob", "iat": time.time()}
        (change,) = await revsync.revoke_many([other])
        assert change.expires_at == pytest.approx(other["iat"] + revsync.settings.cutoff_ttl)
        with pytest.raises(ValueError, match="no numeric exp or iat"):
            await revsync.revoke({"jti": "f-3", "identity": "bob"})


# -- held: the verified-token cache and the token's location ---------------------------------


async def test_held_a_cached_token_is_still_revoked_and_still_expires(
    node: tuple[Quart, RevSync],
) -> None:
    app, revsync = node
    now = time.time()
    claims = {"identity": "carol", "jti": "c-1", "iat": now - 1, "exp": int(now) + 2}
    cached = pyjwt.encode(claims, SECRET)
    assert (await call(app, "/protected", cached))[0] == 200
    assert (await call(app, "/protected", cached))[0] == 200  # served from the cache
    other = token(identity="carol", exp=int(now) + 2)
    assert (await call(app, "/protected", other))[0] == 200
    await revsync.revoke(claims)
    assert await call(app, "/protected", cached) == REVOKED
    await asyncio.sleep(max(0.0, claims["exp"] - time.time()) + 0.2)
    assert await call(app, "/protected", other) == (401, {"msg": "Token has expired"})


async def test_held_a_revoked_token_is_refused_in_every_location(tmp_path: Path) -> None:
    app, revsync = revsync_app(
        tmp_path,
        JWT_TOKEN_LOCATION=["headers", "cookies", "query_string", "json"],
        JWT_COOKIE_CSRF_PROTECT=False,
    )
    async with app.test_app():
        access, refresh = token(identity="dan"), token(identity="dan", type="refresh")

        async def statuses(raw: str, path: str, kind: str) -> list[int]:
            client = app.test_client()
            answers = [await client.get(path, headers={"Authorization": f"Bearer {raw}"})]
            answers.append(await client.get(path, query_string={"jwt": raw}))
            key = "access_token" if kind == "access" else "refresh_token"
            answers.append(await client.post(path, json={key: raw}))
            client.set_cookie("localhost", f"{kind}_token_cookie", raw)
            answers.append(await client.get(path))
            return [answer.status_code for answer in answers]

        assert await statuses(access, "/protected", "access") == [200] * 4
        assert await statuses(refresh, "/refresh", "refresh") == [200] * 4
        assert await statuses(refresh, "/protected", "access") == [422] * 4  # wrong type
        await revsync.revoke(pyjwt.decode(access, SECRET, algorithms=["HS256"]))
        await asyncio.sleep(0.002)
        await revsync.revoke_identity("dan")
        assert await statuses(access, "/protected", "access") == [401] * 4
        assert await statuses(refresh, "/refresh", "refresh") == [401] * 4


# -- settings an operator may give wrong ------------------------------------------------------

BAD_SETTINGS = [
    ("JWT_ACCESS_TOKEN_EXPIRES", 10**20),
    ("JWT_REFRESH_TOKEN_EXPIRES", -(10**20)),
    ("JWT_DECODE_LEEWAY", 10**400),
    ("JWT_DECODE_LEEWAY", timedelta.max),
    ("JWT_SECRET_KEY", 12345),
    ("JWT_BLACKLIST_ENABLED", "false"),
    ("JWT_BLOCKLIST_ENABLED", "0"),
    ("JWT_COOKIE_SECURE", "False"),
    ("JWT_SESSION_COOKIE", "false"),
    ("JWT_COOKIE_CSRF_PROTECT", "no"),
    ("JWT_CSRF_IN_COOKIES", "false"),
    ("JWT_CSRF_CHECK_FORM", "true"),
    ("JWT_CLAIMS_IN_REFRESH_TOKEN", b"false"),
    ("JWT_REFUSE_WEAK_KEYS", "false"),
]


@pytest.mark.parametrize(
    ("key", "value"), BAD_SETTINGS, ids=[f"{k}={v!r}"[:40] for k, v in BAD_SETTINGS]
)
async def test_a_bad_setting_stops_start_up_naming_its_key(key: str, value: Any) -> None:
    app, _ = build_app()
    app.config[key] = value
    # SettingError (a RuntimeError) from the start-up hook; the test app wraps it.
    with pytest.raises(Exception, match=key):
        async with app.test_app():
            pass


def test_a_secret_that_is_not_text_is_refused_naming_its_key() -> None:
    app = Quart(__name__)
    app.config["JWT_SECRET_KEY"] = 12345  # was a TypeError from len() in JWTManager(app)
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY must be a string or bytes"):
        JWTManager(app)


async def test_flags_that_are_not_strings_keep_their_truth() -> None:
    """quart-jwt-extended read flags by their truth; every non-string value still is."""
    app, _ = build_app(JWT_TOKEN_LOCATION=["cookies"], JWT_COOKIE_SECURE=1, JWT_SESSION_COOKIE=0)
    async with app.test_app(), app.app_context():
        from revsync.jwt.config import config

        assert config.cookie_secure is True
        assert config.session_cookie is False


# -- a client that disconnects during "log out everywhere", on real nodes --------------------
# The write is held up by a lock on the store's counter row; the client resets its
# connection meanwhile.  The cut-off must be whole: stored, applied on the node that wrote
# it, announced to the other, and it must end the identity's tokens in every JSON form.


def _send_and_reset(port: int, request: bytes, after: float) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        time.sleep(after)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.fixture
def pg_nodes(
    redis_url: str, postgres_schema_url: str, tmp_path: Path
) -> Iterator[tuple[list[Node], str]]:
    env = base_env(redis_url, postgres_schema_url, REVSYNC_LOG_LEVEL="info")
    nodes = [Node(f"node{i}", env, tmp_path) for i in (1, 2)]
    try:
        start_ready(nodes)
        yield nodes, postgres_schema_url
    finally:
        for started in nodes:
            started.stop()


async def test_disconnect_during_log_out_everywhere_leaves_it_whole(
    pg_nodes: tuple[list[Node], str],
) -> None:
    import asyncpg

    nodes, url = pg_nodes
    base, _, options = url.partition("?")
    schema = options.partition("search_path=")[2]
    key = "s" * 40  # tests.services.conftest.SECRET, the nodes' JWT_SECRET_KEY
    mine = token(key=key, identity=7, type="access", fresh=False)
    twin = token(key=key, identity=7.0)  # the same user, minted by another service
    auth = {"Authorization": f"Bearer {mine}"}
    async with httpx.AsyncClient(timeout=5) as client:
        for raw in (mine, twin):
            answer = await client.get(
                f"{nodes[1].url}/protected", headers={"Authorization": f"Bearer {raw}"}
            )
            assert answer.status_code == 200
        lock = await asyncpg.connect(base, server_settings={"search_path": schema})
        try:
            held = lock.transaction()
            await held.start()
            await lock.execute("SELECT seq FROM revsync_meta FOR UPDATE")
            request = (
                f"POST /logout/all HTTP/1.1\r\nHost: x\r\nAuthorization: {auth['Authorization']}"
                "\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            await asyncio.to_thread(_send_and_reset, nodes[0].port, request, 0.5)
            await asyncio.sleep(0.3)  # the handler is cancelled while its write waits
            await held.commit()
        finally:
            await lock.close()
        deadline = time.monotonic() + 5
        while True:
            answers = [
                (
                    await client.get(
                        f"{n.url}/protected", headers={"Authorization": f"Bearer {raw}"}
                    )
                ).status_code
                for n in nodes
                for raw in (mine, twin)
            ]
            if answers == [401] * 4 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert answers == [401] * 4
    conn = await asyncpg.connect(base, server_settings={"search_path": schema})
    try:
        rows = await conn.fetch("SELECT kind, key, revoked FROM revsync_changes")
    finally:
        await conn.close()
    assert [tuple(row) for row in rows] == [(Kind.IDENTITY.value, "7", True)]
    log = nodes[0].log.read_text()
    assert "revsync.write_finished_after_cancel" in log
    assert "Traceback" not in log
