"""The config proxy and the user claims, attacked (attack 14, second round).

``revsync.jwt.config.config`` read outside an app context, written to, and read with
bad ``JWT_*`` values; user claims absent or not a JSON object, in tokens minted with
the app's key.  Safe answers: a RuntimeError (quart-jwt-extended's error type) naming
the key, at the latest when the app starts serving; never a raw TypeError, a 500 on
every request, or a token whose claims silently overwrite one another.
"""

from __future__ import annotations

import time
from typing import Any

import jwt as pyjwt
import pytest
from quart import Quart, jsonify
from quart.testing.app import LifespanError

from revsync.config import SettingError
from revsync.jwt import (
    JWTManager,
    create_access_token,
    get_jwt_claims,
    get_jwt_identity,
    jwt_required,
)
from revsync.jwt.config import _Config, build_config, config
from tests.jwt.conftest import SECRET, build_app, call

PROPERTIES = sorted(name for name in dir(_Config) if isinstance(getattr(_Config, name), property))


def minted(**claims: Any) -> str:
    return pyjwt.encode(claims, SECRET, algorithm="HS256")


# -- the proxy outside an app, and read-only --------------------------------------------


@pytest.mark.parametrize("name", [n for n in PROPERTIES if n != "exempt_methods"])
def test_every_property_outside_an_app_context_is_a_runtime_error(name: str) -> None:
    with pytest.raises(RuntimeError, match="app context"):
        getattr(config, name)


def test_exempt_methods_is_a_constant_even_outside_an_app() -> None:
    # As in quart-jwt-extended, whose property returns {"OPTIONS"} without reading the app.
    assert config.exempt_methods == frozenset({"OPTIONS"})


async def test_the_proxy_cannot_be_written() -> None:
    app, _ = build_app()
    async with app.app_context():
        with pytest.raises(AttributeError):
            config.algorithm = "none"  # type: ignore[misc]
        with pytest.raises(AttributeError):
            config.blacklist_enabled = False  # type: ignore[misc]
        with pytest.raises(AttributeError):
            config.anything_new = 1  # type: ignore[attr-defined]
        assert config.algorithm == "HS256"


async def test_the_proxy_follows_the_app_of_the_context_and_sync_views() -> None:
    first, _ = build_app(JWT_ERROR_MESSAGE_KEY="first")
    second, _ = build_app(JWT_ERROR_MESSAGE_KEY="second")

    @second.get("/sync-config")
    def sync_config() -> Any:  # run in a worker thread: the app context is copied there
        return jsonify(key=config.error_msg_key, location=list(config.token_location))

    async with first.app_context():
        assert config.error_msg_key == "first"
        async with second.app_context():
            assert config.error_msg_key == "second"
        assert config.error_msg_key == "first"
    response = await second.test_client().get("/sync-config")
    assert await response.get_json() == {"key": "second", "location": ["headers"]}


# -- bad values: an error naming the key, never a raw TypeError or a 500 per request ----

BAD_SETTINGS: list[tuple[str, Any]] = [
    ("JWT_DECODE_LEEWAY", "abc"),
    ("JWT_DECODE_LEEWAY", None),
    ("JWT_DECODE_LEEWAY", []),
    ("JWT_DECODE_LEEWAY", float("nan")),
    ("JWT_DECODE_LEEWAY", float("inf")),
    ("JWT_DECODE_LEEWAY", -5),
    ("JWT_DECODE_LEEWAY", True),
    ("JWT_IDENTITY_CLAIM", None),
    ("JWT_IDENTITY_CLAIM", 5),
    ("JWT_IDENTITY_CLAIM", ""),
    ("JWT_IDENTITY_CLAIM", "jti"),
    ("JWT_IDENTITY_CLAIM", "exp"),
    ("JWT_IDENTITY_CLAIM", "type"),
    ("JWT_IDENTITY_CLAIM", "csrf"),
    ("JWT_IDENTITY_CLAIM", "user_claims"),
    ("JWT_USER_CLAIMS", None),
    ("JWT_USER_CLAIMS", 5),
    ("JWT_USER_CLAIMS", ""),
    ("JWT_USER_CLAIMS", "jti"),
    ("JWT_USER_CLAIMS", "fresh"),
    ("JWT_USER_CLAIMS", "identity"),
    ("JWT_ERROR_MESSAGE_KEY", 5),
    ("JWT_ERROR_MESSAGE_KEY", None),
    ("JWT_ERROR_MESSAGE_KEY", ""),
    ("JWT_HEADER_NAME", 5),
    ("JWT_HEADER_TYPE", 5),
    ("JWT_HEADER_TYPE", ["Bearer"]),
    ("JWT_DECODE_ALGORITHMS", 5),
    ("JWT_DECODE_ALGORITHMS", ["bogus"]),
    ("JWT_DECODE_ALGORITHMS", ["HS256", "none"]),
    ("JWT_DECODE_AUDIENCE", 5),
    ("JWT_DECODE_AUDIENCE", ["api", 5]),
    ("JWT_DECODE_AUDIENCE", []),
    ("JWT_DECODE_ISSUER", 5),
    ("JWT_ENCODE_ISSUER", 5),
    ("JWT_ENCODE_ISSUER", ["issuer"]),
    ("JWT_COOKIE_DOMAIN", 5),
    ("JWT_ACCESS_TOKEN_EXPIRES", "15m"),
    ("JWT_BLACKLIST_TOKEN_CHECKS", "bogus"),
    ("JWT_TOKEN_LOCATION", "bogus"),
]


def _id(case: tuple[str, Any]) -> str:
    return f"{case[0]}={case[1]!r}"


@pytest.mark.parametrize(("key", "value"), BAD_SETTINGS, ids=list(map(_id, BAD_SETTINGS)))
def test_bad_setting_is_refused_naming_its_key(key: str, value: Any) -> None:
    with pytest.raises(SettingError, match=key) as caught:
        build_config({"JWT_SECRET_KEY": SECRET, key: value})
    assert isinstance(caught.value, RuntimeError)  # what quart-jwt-extended raises


@pytest.mark.parametrize(("key", "value"), BAD_SETTINGS, ids=list(map(_id, BAD_SETTINGS)))
async def test_bad_setting_read_through_the_proxy_names_its_key(key: str, value: Any) -> None:
    app, _ = build_app()
    app.config[key] = value
    async with app.app_context():
        for name in ("algorithm", "identity_claim_key", "leeway", "token_location"):
            with pytest.raises(SettingError, match=key):
                getattr(config, name)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("JWT_DECODE_AUDIENCE", 5),  # PyJWT raised TypeError on every token: a 500 each
        ("JWT_HEADER_NAME", 5),  # AttributeError on every request: a 500 each
        ("JWT_DECODE_LEEWAY", "abc"),
    ],
)
async def test_bad_setting_stops_the_start_instead_of_every_request(key: str, value: Any) -> None:
    app, _ = build_app()
    app.config[key] = value
    # Quart's test app reports a failed start as LifespanError, with the reason.
    with pytest.raises(LifespanError, match=key):
        async with app.test_app():
            pass


async def test_good_settings_start_and_serve() -> None:
    app, _ = build_app(
        JWT_DECODE_AUDIENCE=["api", "admin"],
        JWT_DECODE_ISSUER="issuer-a",
        JWT_DECODE_LEEWAY=0,
        JWT_DECODE_ALGORITHMS="HS256",  # one name, as a string
        JWT_IDENTITY_CLAIM="sub",
        JWT_USER_CLAIMS="uc",
        JWT_HEADER_TYPE=None,
    )
    async with app.test_app():
        token = minted(sub="alice", aud="admin", iss="issuer-a", exp=int(time.time()) + 60)
        status, body = await call(app, "/protected", headers={"Authorization": token})
        assert (status, body["identity"]) == (200, "alice")


async def test_identity_never_overwritten_by_the_token_claims() -> None:
    # JWT_IDENTITY_CLAIM="exp" used to mint tokens whose identity was the expiry time.
    with pytest.raises(SettingError, match="JWT_IDENTITY_CLAIM must not be 'exp'"):
        build_config({"JWT_SECRET_KEY": SECRET, "JWT_IDENTITY_CLAIM": "exp"})
    app, manager = build_app(JWT_IDENTITY_CLAIM="sub", JWT_USER_CLAIMS="roles")
    manager.user_claims_loader(lambda identity: {"sub": "root", "exp": 1})
    async with app.app_context():
        token = create_access_token("alice")
    status, body = await call(app, "/protected", token)
    assert (status, body["identity"], body["claims"]) == (200, "alice", {"sub": "root", "exp": 1})


# -- user claims absent or of another JSON type ------------------------------------------


def claims_app(verify: bool = False) -> tuple[Quart, list[Any]]:
    app = Quart(__name__)
    app.config["JWT_SECRET_KEY"] = SECRET
    jwt = JWTManager(app)
    seen: list[Any] = []
    if verify:

        @jwt.claims_verification_loader
        def verify_claims(user_claims: Any) -> bool:
            seen.append(user_claims)
            return isinstance(user_claims, dict) and user_claims.get("role") == "admin"

    @app.route("/claims")
    @jwt_required
    async def claims() -> Any:
        return jsonify(identity=get_jwt_identity(), claims=get_jwt_claims())

    return app, seen


ODD_CLAIMS = ["admin", 5, None, True, ["admin"], {"role": "admin"}, {}]


@pytest.mark.parametrize("value", ODD_CLAIMS)
async def test_user_claims_of_any_json_type_are_read_as_the_original(value: Any) -> None:
    # quart-jwt-extended hands the value over untouched; so does revsync.
    app, _ = claims_app()
    token = minted(identity="alice", exp=int(time.time()) + 60, user_claims=value)
    response = await app.test_client().get("/claims", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert await response.get_json() == {"identity": "alice", "claims": value}


async def test_absent_user_claims_read_as_an_empty_object() -> None:
    app, seen = claims_app(verify=True)
    token = minted(identity="alice", exp=int(time.time()) + 60)
    response = await app.test_client().get("/claims", headers={"Authorization": f"Bearer {token}"})
    assert (response.status_code, await response.get_json()) == (
        400,
        {"msg": "User claims verification failed"},
    )
    assert seen == [{}]


@pytest.mark.parametrize("value", ODD_CLAIMS)
async def test_claims_verification_sees_odd_user_claims_and_refuses_cleanly(value: Any) -> None:
    app, seen = claims_app(verify=True)
    token = minted(identity="alice", exp=int(time.time()) + 60, user_claims=value)
    response = await app.test_client().get("/claims", headers={"Authorization": f"Bearer {token}"})
    if value == {"role": "admin"}:
        assert response.status_code == 200
    else:
        assert (response.status_code, await response.get_json()) == (
            400,
            {"msg": "User claims verification failed"},
        )
    assert seen == [value]


@pytest.mark.parametrize("value", [None, False, 0, "", [], {}])
async def test_empty_user_claims_from_the_loader_are_left_out(value: Any) -> None:
    app, manager = build_app(JWT_CLAIMS_IN_REFRESH_TOKEN=True)
    manager.user_claims_loader(lambda identity: value)
    async with app.app_context():
        token = create_access_token("alice")
    assert "user_claims" not in pyjwt.decode(token, options={"verify_signature": False})
    status, body = await call(app, "/protected", token)
    assert (status, body["claims"]) == (200, {})
