"""Loaders and callbacks, each as a plain function and as a coroutine function."""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any

import jwt as pyjwt
import pytest
from quart import Quart
from structlog.testing import capture_logs

from revsync.jwt import JWTManager, create_access_token, create_refresh_token
from revsync.jwt.manager import on_manager
from tests.jwt.conftest import SECRET, AppFactory, call


async def tokens(app: Quart, **access: Any) -> tuple[str, str]:
    async with app.app_context():
        return create_access_token("alice", **access), create_refresh_token("alice")


def jti(token: str) -> str:
    value: str = pyjwt.decode(token, options={"verify_signature": False})["jti"]
    return value


def blacklist_loader(revoked: set[str], *, is_async: bool) -> Any:
    seen: list[dict[str, Any]] = []
    if is_async:

        async def check_async(claims: dict[str, Any]) -> bool:
            seen.append(claims)
            return claims["jti"] in revoked

        check_async.seen = seen  # type: ignore[attr-defined]
        return check_async

    def check(claims: dict[str, Any]) -> bool:
        seen.append(claims)
        return claims["jti"] in revoked

    check.seen = seen  # type: ignore[attr-defined]
    return check


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_blacklist_loader(make_app: AppFactory, is_async: bool) -> None:
    app, manager = make_app(JWT_BLACKLIST_ENABLED=True)
    revoked: set[str] = set()
    loader = manager.token_in_blacklist_loader(blacklist_loader(revoked, is_async=is_async))
    assert manager.denylist_loader is loader
    access, refresh = await tokens(app)
    kept, kept_refresh = await tokens(app)
    revoked.update({jti(access), jti(refresh)})

    assert await call(app, "/protected", access) == (401, {"msg": "Token has been revoked"})
    assert (await call(app, "/protected", kept))[0] == 200
    assert await call(app, "/refresh", refresh, method="POST") == (
        401,
        {"msg": "Token has been revoked"},
    )
    assert (await call(app, "/refresh", kept_refresh, method="POST"))[0] == 200
    # The loader gets the decoded claims dict.
    last = loader.seen[-1]
    assert last["jti"] == jti(kept_refresh)
    assert {"jti", "iat", "nbf", "exp", "type", "identity"} <= set(last)


async def test_only_configured_token_types_are_checked(make_app: AppFactory) -> None:
    app, manager = make_app(JWT_BLACKLIST_ENABLED=True, JWT_BLACKLIST_TOKEN_CHECKS=["access"])
    manager.token_in_blacklist_loader(lambda claims: True)
    access, refresh = await tokens(app)
    assert await call(app, "/protected", access) == (401, {"msg": "Token has been revoked"})
    assert (await call(app, "/refresh", refresh, method="POST"))[0] == 200
    # An in-place edit of the list is seen on the next request.
    app.config["JWT_BLACKLIST_TOKEN_CHECKS"].append("refresh")
    assert await call(app, "/refresh", refresh, method="POST") == (
        401,
        {"msg": "Token has been revoked"},
    )


async def test_blacklist_disabled_never_calls_loader(make_app: AppFactory) -> None:
    app, manager = make_app()
    calls: list[Any] = []
    manager.token_in_blacklist_loader(calls.append)
    access, _ = await tokens(app)
    assert (await call(app, "/protected", access))[0] == 200
    assert calls == []


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_blocklist_aliases_and_two_argument_loader(
    make_app: AppFactory, is_async: bool
) -> None:
    app, manager = make_app(JWT_BLOCKLIST_ENABLED=True, JWT_BLOCKLIST_TOKEN_CHECKS=["access"])
    revoked: set[str] = set()
    headers_seen: list[dict[str, Any]] = []

    if is_async:

        @manager.token_in_blocklist_loader
        async def check_async(header: dict[str, Any], claims: dict[str, Any]) -> bool:
            headers_seen.append(header)
            return claims["jti"] in revoked

    else:

        @manager.token_in_blocklist_loader
        def check(header: dict[str, Any], claims: dict[str, Any]) -> bool:
            headers_seen.append(header)
            return claims["jti"] in revoked

    access, refresh = await tokens(app)
    other, _ = await tokens(app)
    revoked.add(jti(access))
    assert await call(app, "/protected", access) == (401, {"msg": "Token has been revoked"})
    assert (await call(app, "/protected", other))[0] == 200
    assert (await call(app, "/refresh", refresh, method="POST"))[0] == 200
    assert headers_seen[-1]["alg"] == "HS256"
    assert manager.denylist_loader is (check_async if is_async else check)


def test_the_three_names_of_the_denylist_loader(make_app: AppFactory) -> None:
    # revsync's own name, quart-jwt-extended's and flask-jwt-extended 4's.
    _, manager = make_app()
    for register in (
        manager.token_in_denylist_loader,
        manager.token_in_blacklist_loader,
        manager.token_in_blocklist_loader,
    ):

        def loader(claims: dict[str, Any]) -> bool:
            return False

        assert register(loader) is loader
        assert manager.denylist_loader is loader


async def test_blacklist_enabled_without_loader_is_a_500(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_BLACKLIST_ENABLED=True)
    access, _ = await tokens(app)
    with capture_logs() as logs:
        status, body = await call(app, "/protected", access)
    assert (status, body) == (500, {"msg": "Internal server error"})
    assert logs == [
        {
            "event": "revsync.no_denylist_loader",
            "log_level": "error",
            "error": "JWT_BLACKLIST_ENABLED is set but no loader was registered with "
            "@jwt.token_in_blacklist_loader",
        }
    ]


async def test_request_path_logs_nothing_when_all_is_well(make_app: AppFactory) -> None:
    app, manager = make_app(JWT_BLACKLIST_ENABLED=True)
    manager.token_in_blacklist_loader(lambda claims: False)
    access, _ = await tokens(app)
    with capture_logs() as logs:
        assert (await call(app, "/protected", access))[0] == 200
    assert logs == []


def _maybe_async(fn: Any, is_async: bool) -> Any:
    if not is_async:
        return fn

    async def wrapper(*args: Any) -> Any:
        return fn(*args)

    return wrapper


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_error_callbacks(make_app: AppFactory, is_async: bool) -> None:
    app, manager = make_app(JWT_BLACKLIST_ENABLED=True)
    manager.token_in_blacklist_loader(_maybe_async(lambda c: c["identity"] == "bob", is_async))
    expired_seen: list[dict[str, Any]] = []

    def expired(token: dict[str, Any]) -> Any:
        expired_seen.append(token)
        return {"custom": "expired"}, 419

    manager.expired_token_loader(_maybe_async(expired, is_async))
    manager.invalid_token_loader(_maybe_async(lambda e: ({"custom": f"bad: {e}"}, 400), is_async))
    manager.unauthorized_loader(_maybe_async(lambda e: ({"custom": f"none: {e}"}, 403), is_async))
    manager.needs_fresh_token_loader(_maybe_async(lambda: ({"custom": "stale"}, 403), is_async))
    manager.revoked_token_loader(_maybe_async(lambda: ({"custom": "revoked"}, 410), is_async))

    async with app.app_context():
        old = create_access_token("alice", expires_delta=timedelta(seconds=-5))
        stale = create_access_token("alice")
        bobs = create_access_token("bob")
    assert await call(app, "/protected", old) == (419, {"custom": "expired"})
    assert expired_seen[0]["identity"] == "alice"
    assert expired_seen[0]["type"] == "access"
    assert await call(app, "/protected", "x") == (400, {"custom": "bad: Not enough segments"})
    assert await call(app, "/protected") == (
        403,
        {"custom": "none: Missing Authorization Header"},
    )
    assert await call(app, "/fresh", stale) == (403, {"custom": "stale"})
    assert await call(app, "/protected", bobs) == (410, {"custom": "revoked"})


async def test_expired_callback_without_argument(make_app: AppFactory) -> None:
    app, manager = make_app()

    @manager.expired_token_loader
    def expired() -> Any:
        return {"msg": "old"}, 401

    old, _ = await tokens(app, expires_delta=timedelta(seconds=-5))
    with pytest.warns(DeprecationWarning, match="expired_token_loader callback now takes"):
        assert await call(app, "/protected", old) == (401, {"msg": "old"})


async def test_expired_callback_with_argument_gives_no_warning(make_app: AppFactory) -> None:
    app, manager = make_app()

    @manager.expired_token_loader
    def expired(claims: dict[str, Any]) -> Any:
        return {"msg": f"old {claims['identity']}"}, 401

    old, _ = await tokens(app, expires_delta=timedelta(seconds=-5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert await call(app, "/protected", old) == (401, {"msg": "old alice"})


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_user_loader(make_app: AppFactory, is_async: bool) -> None:
    app, manager = make_app()
    users = {"alice": {"name": "Alice"}}
    manager.user_loader_callback_loader(_maybe_async(users.get, is_async))
    access, refresh = await tokens(app)
    status, body = await call(app, "/protected", access)
    assert (status, body["user"]) == (200, {"name": "Alice"})
    assert (await call(app, "/refresh", refresh, method="POST"))[1]["user"] == {"name": "Alice"}
    async with app.app_context():
        ghost = create_access_token("ghost")
    assert await call(app, "/protected", ghost) == (401, {"msg": "Error loading the user ghost"})

    manager.user_loader_error_loader(
        _maybe_async(lambda identity: ({"msg": f"who is {identity}?"}, 404), is_async)
    )
    assert await call(app, "/protected", ghost) == (404, {"msg": "who is ghost?"})


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_claims_verification(make_app: AppFactory, is_async: bool) -> None:
    app, manager = make_app()
    manager.claims_verification_loader(
        _maybe_async(lambda claims: claims.get("role") == "admin", is_async)
    )
    async with app.app_context():
        admin = create_access_token("alice", user_claims={"role": "admin"})
        user = create_access_token("bob", user_claims={"role": "user"})
    assert (await call(app, "/protected", admin))[0] == 200
    assert await call(app, "/protected", user) == (400, {"msg": "User claims verification failed"})
    manager.claims_verification_failed_loader(
        _maybe_async(lambda: ({"msg": "nope"}, 403), is_async)
    )
    assert await call(app, "/protected", user) == (403, {"msg": "nope"})


def test_init_app_registers_and_calls_the_extensions_waiting_for_it() -> None:
    attached: list[JWTManager] = []

    def attach(manager: JWTManager) -> None:
        attached.append(manager)
        manager.token_in_blacklist_loader(is_revoked)

    def is_revoked(claims: dict[str, Any]) -> bool:
        return False

    app = Quart(__name__)
    app.config["JWT_SECRET_KEY"] = SECRET
    on_manager(app, attach)  # an extension set up before the manager
    assert attached == []
    manager = JWTManager(app)
    assert app.extensions["revsync.jwt"] is manager
    assert attached == [manager]
    assert manager.denylist_loader == is_revoked
    later: list[JWTManager] = []
    on_manager(app, later.append)  # set up after it: called at once
    assert later == [manager]
    second = JWTManager(app)  # a manager registered again is wired again
    assert attached == [manager, second]
    assert second.denylist_loader == is_revoked

    plain = Quart(__name__)
    plain.config["JWT_SECRET_KEY"] = SECRET
    assert JWTManager(plain).denylist_loader is None


async def test_validly_signed_deeply_nested_payload(make_app: AppFactory) -> None:
    app, _ = make_app()
    token = pyjwt.api_jws.encode(b"[" * 50_000, SECRET, algorithm="HS256")
    status, body = await call(app, "/protected", token)
    assert status == 422
    assert body["msg"].startswith("Invalid payload string: maximum recursion depth")


async def test_payload_with_huge_numbers(make_app: AppFactory) -> None:
    app, _ = make_app()
    payload = b'{"jti":"j","iat":1e999,"exp":1e999,"type":"access","identity":"a"}'
    token = pyjwt.api_jws.encode(payload, SECRET, algorithm="HS256")
    assert await call(app, "/protected", token) == (
        422,
        {"msg": "Issued At claim (iat) must be an integer."},
    )
