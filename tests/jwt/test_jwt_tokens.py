"""Token creation, claims, expiry, keys and config: what a token carries and needs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from structlog.testing import capture_logs

from revsync.jwt import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    decode_token,
    get_jti,
    get_jwt,
    get_jwt_claims,
    get_jwt_identity,
    get_raw_jwt,
    get_unverified_jwt_headers,
    jwt_required,
)
from revsync.jwt.config import build_config
from tests.jwt.conftest import SECRET, AppFactory, call


def unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = pyjwt.decode(token, options={"verify_signature": False})
    return claims


async def test_access_token_carries_every_claim(make_app: AppFactory) -> None:
    app, _ = make_app()
    async with app.app_context():
        token = create_access_token("alice")
    claims = unverified(token)
    assert set(claims) == {"jti", "iat", "nbf", "exp", "type", "fresh", "identity"}
    assert str(uuid.UUID(claims["jti"], version=4)) == claims["jti"]
    # iat carries milliseconds (so a "log out everywhere" cut-off can tell tokens of
    # the same second apart); nbf and exp are whole seconds.
    assert isinstance(claims["iat"], float)
    assert claims["iat"] == round(claims["iat"], 3)
    assert claims["nbf"] == int(claims["iat"])
    assert claims["exp"] == claims["nbf"] + 15 * 60
    assert claims["type"] == "access"
    assert claims["fresh"] is False
    assert claims["identity"] == "alice"


async def test_refresh_token_claims_and_default_lifetime(make_app: AppFactory) -> None:
    app, _ = make_app()
    async with app.app_context():
        token = create_refresh_token("alice")
    claims = unverified(token)
    assert set(claims) == {"jti", "iat", "nbf", "exp", "type", "identity"}
    assert claims["type"] == "refresh"
    assert claims["exp"] == claims["nbf"] + 30 * 24 * 3600


@pytest.mark.parametrize(
    ("setting", "lifetime"), [(60, 60), (timedelta(hours=2), 7200)], ids=["int", "timedelta"]
)
async def test_expiry_setting_forms(make_app: AppFactory, setting: Any, lifetime: int) -> None:
    app, _ = make_app(JWT_ACCESS_TOKEN_EXPIRES=setting, JWT_REFRESH_TOKEN_EXPIRES=setting)
    async with app.app_context():
        access = unverified(create_access_token("alice"))
        refresh = unverified(create_refresh_token("alice"))
    assert access["exp"] - access["nbf"] == lifetime
    assert refresh["exp"] - refresh["nbf"] == lifetime


async def test_expires_false_omits_exp_and_still_decodes(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_ACCESS_TOKEN_EXPIRES=False, JWT_REFRESH_TOKEN_EXPIRES=False)
    async with app.app_context():
        access = create_access_token("alice")
        refresh = create_refresh_token("alice")
    assert "exp" not in unverified(access)
    assert "exp" not in unverified(refresh)
    assert await call(app, "/protected", access) == (
        200,
        {"identity": "alice", "claims": {}, "type": "access", "kid": None, "user": None},
    )
    assert (await call(app, "/refresh", refresh, method="POST"))[0] == 200


async def test_token_without_exp_accepted_even_when_app_expires(make_app: AppFactory) -> None:
    # As in quart-jwt-extended: a token without exp never expires, whatever the settings.
    app, _ = make_app()
    async with app.app_context():
        token = create_access_token("alice", expires_delta=False)
    assert "exp" not in unverified(token)
    assert (await call(app, "/protected", token))[0] == 200


async def test_invalid_expiry_setting_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="JWT_ACCESS_TOKEN_EXPIRES"):
        build_config({"JWT_ACCESS_TOKEN_EXPIRES": "soon"})


async def test_leeway_accepts_recently_expired_token(make_app: AppFactory) -> None:
    strict, _ = make_app()
    lenient, _ = make_app(JWT_DECODE_LEEWAY=30)
    async with strict.app_context():
        token = create_access_token("alice", expires_delta=timedelta(seconds=-5))
    assert await call(strict, "/protected", token) == (401, {"msg": "Token has expired"})
    assert (await call(lenient, "/protected", token))[0] == 200


async def test_audience_and_issuer(make_app: AppFactory) -> None:
    app, _ = make_app(
        JWT_ENCODE_ISSUER="issuer-a", JWT_DECODE_ISSUER="issuer-a", JWT_DECODE_AUDIENCE="api"
    )
    now = int(time.time())
    base = {"jti": "j", "iat": now, "nbf": now, "exp": now + 60, "type": "access"}
    base["identity"] = "alice"

    def signed(**extra: Any) -> str:
        return pyjwt.encode({**base, **extra}, SECRET, algorithm="HS256")

    assert (await call(app, "/protected", signed(iss="issuer-a", aud="api")))[0] == 200
    assert await call(app, "/protected", signed(iss="issuer-a", aud="other")) == (
        422,
        {"msg": "Audience doesn't match"},
    )
    assert await call(app, "/protected", signed(iss="issuer-a")) == (
        422,
        {"msg": 'Token is missing the "aud" claim'},
    )
    assert await call(app, "/protected", signed(iss="issuer-b", aud="api")) == (
        422,
        {"msg": "Invalid issuer"},
    )
    async with app.app_context():
        created = create_access_token("alice")
        refresh = create_refresh_token("alice")
    assert unverified(created)["iss"] == "issuer-a"
    assert unverified(refresh)["iss"] == "issuer-a"


def _rsa_pems() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _pems(key)


def _ec_pems() -> tuple[bytes, bytes]:
    return _pems(ec.generate_private_key(ec.SECP256R1()))


def _pems(key: Any) -> tuple[bytes, bytes]:
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.mark.parametrize(("algorithm", "pems"), [("RS256", _rsa_pems), ("ES256", _ec_pems)])
async def test_asymmetric_algorithms(make_app: AppFactory, algorithm: str, pems: Any) -> None:
    private, public = pems()
    app, _ = make_app(
        JWT_ALGORITHM=algorithm,
        JWT_SECRET_KEY=None,
        JWT_PRIVATE_KEY=private.decode(),
        JWT_PUBLIC_KEY=public.decode(),
    )
    async with app.app_context():
        token = create_access_token("alice")
    assert get_unverified_jwt_headers(token)["alg"] == algorithm
    assert pyjwt.decode(token, public, algorithms=[algorithm])["identity"] == "alice"
    assert (await call(app, "/protected", token))[0] == 200

    verify_only, _ = make_app(
        JWT_ALGORITHM=algorithm, JWT_SECRET_KEY=None, JWT_PUBLIC_KEY=public.decode()
    )
    assert (await call(verify_only, "/protected", token))[0] == 200
    async with verify_only.app_context():
        with pytest.raises(RuntimeError, match="JWT_PRIVATE_KEY must be set"):
            create_access_token("alice")

    _, other_public = pems()
    wrong_key, _ = make_app(
        JWT_ALGORITHM=algorithm, JWT_SECRET_KEY=None, JWT_PUBLIC_KEY=other_public.decode()
    )
    assert await call(wrong_key, "/protected", token) == (
        422,
        {"msg": "Signature verification failed"},
    )


async def test_hs256_token_refused_by_rs256_app(make_app: AppFactory) -> None:
    """The classic confusion: an HS256 token signed with the app's public key as secret."""
    import hashlib
    import hmac

    from tests.jwt.conftest import b64

    private, public = _rsa_pems()
    app, _ = make_app(JWT_ALGORITHM="RS256", JWT_PRIVATE_KEY=private, JWT_PUBLIC_KEY=public)
    now = int(time.time())
    payload = {"jti": "j", "iat": now, "nbf": now, "exp": now + 60, "type": "access"}
    payload["identity"] = "mallory"
    import json

    signing_input = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + b64(json.dumps(payload).encode())
    )
    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(signature)}"
    assert await call(app, "/protected", token) == (
        422,
        {"msg": "The specified alg value is not allowed"},
    )


async def test_user_claims_only_when_non_empty(make_app: AppFactory) -> None:
    app, manager = make_app(JWT_USER_CLAIMS="uc")
    async with app.app_context():
        plain = create_access_token("alice")
    assert "uc" not in unverified(plain)

    @manager.user_claims_loader
    def claims(identity: str) -> dict[str, str]:
        return {"role": "admin" if identity == "alice" else "user"}

    async with app.app_context():
        token = create_access_token("alice")
        refresh = create_refresh_token("alice")
        overridden = create_access_token("alice", user_claims={"role": "guest"})
    assert unverified(token)["uc"] == {"role": "admin"}
    assert "uc" not in unverified(refresh)
    assert unverified(overridden)["uc"] == {"role": "guest"}
    status, body = await call(app, "/protected", token)
    assert (status, body["claims"]) == (200, {"role": "admin"})
    status, body = await call(app, "/protected", plain)
    assert (status, body["claims"]) == (200, {})


async def test_claims_in_refresh_token_setting(make_app: AppFactory) -> None:
    app, manager = make_app(JWT_CLAIMS_IN_REFRESH_TOKEN=True)
    manager.user_claims_loader(lambda identity: {"role": "admin"})
    async with app.app_context():
        refresh = create_refresh_token("alice")
    assert unverified(refresh)["user_claims"] == {"role": "admin"}


async def test_identity_loader_and_custom_identity_claim(make_app: AppFactory) -> None:
    class User:
        def __init__(self, name: str) -> None:
            self.name = name

    app, manager = make_app(JWT_IDENTITY_CLAIM="sub")

    @manager.user_identity_loader
    def identity(user: User) -> str:
        return user.name

    async with app.app_context():
        token = create_access_token(User("alice"))
    assert unverified(token)["sub"] == "alice"
    status, body = await call(app, "/protected", token)
    assert (status, body["identity"]) == (200, "alice")


async def test_non_string_sub_identity_is_accepted(make_app: AppFactory) -> None:
    app, _ = make_app(JWT_IDENTITY_CLAIM="sub")
    async with app.app_context():
        token = create_access_token(42)
    status, body = await call(app, "/protected", token)
    assert (status, body["identity"]) == (200, 42)


async def test_async_creation_loaders_make_creation_awaitable(make_app: AppFactory) -> None:
    app, manager = make_app()

    @manager.user_claims_loader
    async def claims(identity: str) -> dict[str, str]:
        return {"role": "admin"}

    @manager.user_identity_loader
    async def identity(user: str) -> str:
        return user.upper()

    @manager.additional_headers_loader
    async def headers(identity: str) -> dict[str, str]:
        return {"kid": "k1"}

    async with app.app_context():
        pending: Any = create_access_token("alice")
        token = await pending
        refresh = await create_refresh_token("alice")  # type: ignore[misc]
    assert isinstance(token, str)
    claims_ = unverified(token)
    assert (claims_["identity"], claims_["user_claims"]) == ("ALICE", {"role": "admin"})
    assert get_unverified_jwt_headers(token)["kid"] == "k1"
    assert unverified(refresh)["identity"] == "ALICE"
    status, body = await call(app, "/protected", token)
    assert (status, body["kid"], body["claims"]) == (200, "k1", {"role": "admin"})


async def test_encode_and_decode_key_loaders(make_app: AppFactory) -> None:
    keys = {"k1": "first-key-" + "x" * 32, "k2": "second-key-" + "y" * 32}
    app, manager = make_app(JWT_SECRET_KEY=None)

    @manager.encode_key_loader
    def encode_key(identity: str) -> str:
        return keys["k2"]

    @manager.additional_headers_loader
    def headers(identity: str) -> dict[str, str]:
        return {"kid": "k2"}

    @manager.decode_key_loader
    async def decode_key(claims: dict[str, Any], header: dict[str, Any]) -> str:
        return keys[header["kid"]]

    async with app.app_context():
        token = create_access_token("alice")
        assert (await get_jti(token)) == unverified(token)["jti"]  # type: ignore[misc]
        assert (await decode_token(token))["identity"] == "alice"  # type: ignore[misc]
    assert (await call(app, "/protected", token))[0] == 200
    forged = pyjwt.encode(
        {**unverified(token), "identity": "mallory"}, keys["k1"], headers={"kid": "k2"}
    )
    assert await call(app, "/protected", forged) == (
        422,
        {"msg": "Signature verification failed"},
    )


async def test_single_argument_decode_key_loader(make_app: AppFactory) -> None:
    app, manager = make_app()
    manager.decode_key_loader(lambda claims: SECRET)
    async with app.app_context():
        token = create_access_token("alice")
        with pytest.warns(DeprecationWarning, match="single-argument"):
            assert decode_token(token)["identity"] == "alice"


async def test_helpers_outside_a_protected_request(make_app: AppFactory) -> None:
    app, _ = make_app()
    async with app.app_context():
        token = create_access_token("alice", fresh=True)
        decoded = decode_token(token)
        assert decoded["fresh"] is True
        assert decoded["user_claims"] == {}
        assert get_jti(token) == decoded["jti"]
        assert get_raw_jwt() == {}
        assert get_jwt() == {}
        assert get_jwt_identity() is None
        assert get_jwt_claims() == {}
        expired = create_access_token("alice", expires_delta=timedelta(seconds=-1))
        with pytest.raises(pyjwt.ExpiredSignatureError):
            decode_token(expired)
        assert decode_token(expired, allow_expired=True)["identity"] == "alice"


def test_weak_secret_logs_a_loud_warning(make_app: AppFactory) -> None:
    with capture_logs() as logs:
        make_app(JWT_SECRET_KEY="super-secret")
    assert logs == [
        {
            "event": "revsync.weak_jwt_key",
            "log_level": "warning",
            "setting": "JWT_SECRET_KEY",
            "algorithm": "HS256",
            "key_bytes": 12,
            "minimum_bytes": 32,
            "advice": "anyone who guesses a short secret can forge tokens; use 32+ random bytes",
        }
    ]


def test_strong_secret_logs_nothing(make_app: AppFactory) -> None:
    with capture_logs() as logs:
        make_app()
    assert logs == []


def test_refuse_weak_keys_raises_naming_the_setting(make_app: AppFactory) -> None:
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY is 12 bytes long"):
        make_app(JWT_SECRET_KEY="super-secret", JWT_REFUSE_WEAK_KEYS=True)
    make_app(JWT_REFUSE_WEAK_KEYS=True)  # a long key passes


def test_missing_secret_is_a_clear_error(make_app: AppFactory) -> None:
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY or quart SECRET_KEY must be set"):
        build_config({}).require_encode_key()
    assert build_config({"SECRET_KEY": "s" * 32}).require_encode_key() == b"s" * 32


def test_algorithm_none_cannot_be_configured() -> None:
    with pytest.raises(RuntimeError, match="not a supported signing algorithm"):
        build_config({"JWT_ALGORITHM": "none"})
    with pytest.raises(RuntimeError, match="must not contain 'none'"):
        build_config({"JWT_SECRET_KEY": SECRET, "JWT_DECODE_ALGORITHMS": ["HS256", "none"]})


def test_unknown_token_location_is_refused() -> None:
    with pytest.raises(RuntimeError, match='JWT_TOKEN_LOCATION can only contain "headers", "cook'):
        build_config({"JWT_TOKEN_LOCATION": ["headers", "session"]})


async def test_config_changes_after_first_request_are_seen(make_app: AppFactory) -> None:
    app, _ = make_app()
    assert await call(app, "/protected") == (401, {"msg": "Missing Authorization Header"})
    app.config["JWT_ERROR_MESSAGE_KEY"] = "error"
    assert await call(app, "/protected") == (401, {"error": "Missing Authorization Header"})
    other, _ = make_app(JWT_HEADER_NAME="X-Token")
    assert await call(other, "/protected") == (401, {"msg": "Missing X-Token Header"})
    assert await call(app, "/protected") == (401, {"error": "Missing Authorization Header"})


def test_manager_without_app_then_init_app() -> None:
    from quart import Quart

    manager = JWTManager()
    app = Quart(__name__)
    manager.init_app(app)
    assert app.extensions["revsync.jwt"] is manager
    assert app.config["JWT_ALGORITHM"] == "HS256"
    assert app.config["JWT_IDENTITY_CLAIM"] == "identity"


async def test_verified_token_cache_still_checks_expiry(make_app: AppFactory) -> None:
    app, manager = make_app()
    seen: list[dict[str, Any]] = []

    @manager.expired_token_loader
    def expired(claims: dict[str, Any]) -> Any:
        seen.append(claims)
        return {"msg": "Token has expired"}, 401

    async with app.app_context():
        token = create_access_token("alice", expires_delta=timedelta(seconds=1))
    assert (await call(app, "/protected", token))[0] == 200
    assert (await call(app, "/protected", token))[0] == 200  # served from the cache
    exp = unverified(token)["exp"]
    await asyncio.sleep(max(0.0, exp - time.time()) + 0.01)
    assert await call(app, "/protected", token) == (401, {"msg": "Token has expired"})
    assert seen[0]["jti"] == unverified(token)["jti"]


async def test_verified_token_cache_hands_out_fresh_dicts(make_app: AppFactory) -> None:
    app, _ = make_app()

    @app.get("/mutate")
    @jwt_required
    async def mutate() -> Any:
        claims = get_raw_jwt()
        seen = json.loads(json.dumps(claims))
        claims["identity"] = "mallory"
        claims["user_claims"]["role"] = "admin"
        return seen

    async with app.app_context():
        token = create_access_token("alice")
    first = await call(app, "/mutate", token)
    second = await call(app, "/mutate", token)
    assert first == second
    assert second[1]["identity"] == "alice"
    assert second[1]["user_claims"] == {}


async def test_verified_token_cache_is_bounded(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from revsync.jwt import tokens
    from revsync.jwt.config import config_for

    monkeypatch.setattr(tokens, "VERIFIED_CACHE_SIZE", 3)
    app, _ = make_app()
    async with app.app_context():
        issued = [create_access_token(f"user{i}") for i in range(5)]
        for token in issued:
            decode_token(token)
        cache = config_for(app).verified
        assert list(cache) == issued[2:]
        # A change of config starts a new, empty cache.
        app.config["JWT_DECODE_LEEWAY"] = 5
        assert config_for(app).verified == {}
