"""The deprecated callback forms quart-jwt-extended 0.1.0 still accepts (issue 14).

Its source has exactly two, each called in the old way with a DeprecationWarning
(utils.decode_token and jwt_manager's expired-token handler; flask-jwt-extended 4.0
turned the same two, plus the JWT_CSRF_HEADER_NAME setting, into errors):

- ``decode_key_loader`` with one argument, the unverified claims;
- ``expired_token_loader`` with no argument.

Each test is written as an app on quart-jwt-extended writes it, only the import
changed.
"""

from __future__ import annotations

import warnings
from datetime import timedelta

import jwt as pyjwt
import pytest
from quart import Quart, jsonify

from revsync.jwt import (
    JWTManager,
    create_access_token,
    decode_token,
    get_jti,
    get_jwt_identity,
    jwt_required,
)

DECODE_KEY_WARNING = (
    r"The single-argument \(unverified_claims\) form of decode_key_callback is "
    r"deprecated\. Update your code to use the two-argument form "
    r"\(unverified_claims, unverified_headers\)\."
)
EXPIRED_WARNING = (
    r"jwt\.expired_token_loader callback now takes the expired token as an additional "
    r"parameter\. Example: expired_callback\(token\)"
)
KEYS = {
    "alice": "alice-has-her-own-signing-key-of-32-bytes",
    "bob": "bob-has-another-signing-key-of-32-bytes!!",
}


def keyed_app() -> Quart:
    """One signing key per user, chosen from the token's (unverified) identity."""
    app = Quart(__name__)
    app.config["JWT_SECRET_KEY"] = "the-default-secret-nobody-signs-with!!"
    jwt = JWTManager(app)

    @jwt.encode_key_loader
    def encode_key(identity):
        return KEYS[identity]

    @jwt.decode_key_loader
    def decode_key(unverified_claims):
        return KEYS[unverified_claims["identity"]]

    @app.route("/protected")
    @jwt_required
    async def protected():
        return jsonify(logged_in_as=get_jwt_identity()), 200

    return app


async def test_single_argument_decode_key_loader_still_decodes_and_warns() -> None:
    app = keyed_app()
    async with app.app_context():
        token = create_access_token(identity="alice")
        with pytest.warns(DeprecationWarning, match=DECODE_KEY_WARNING):
            assert decode_token(token)["identity"] == "alice"
        with pytest.warns(DeprecationWarning, match=DECODE_KEY_WARNING):
            assert get_jti(token) == pyjwt.decode(token, options={"verify_signature": False})["jti"]
    client = app.test_client()
    with pytest.warns(DeprecationWarning, match=DECODE_KEY_WARNING):
        response = await client.get("/protected", headers={"Authorization": f"Bearer {token}"})
    assert (response.status_code, await response.get_json()) == (200, {"logged_in_as": "alice"})


async def test_single_argument_decode_key_loader_still_checks_the_signature() -> None:
    app = keyed_app()
    # Claims to be bob, signed with alice's key: bob's key does not verify it.
    forged = pyjwt.encode({"identity": "bob", "type": "access"}, KEYS["alice"])
    client = app.test_client()
    with pytest.warns(DeprecationWarning, match=DECODE_KEY_WARNING):
        response = await client.get("/protected", headers={"Authorization": f"Bearer {forged}"})
    assert (response.status_code, await response.get_json()) == (
        422,
        {"msg": "Signature verification failed"},
    )


async def test_two_argument_decode_key_loader_gives_no_warning() -> None:
    app = Quart(__name__)
    jwt = JWTManager(app)

    @jwt.encode_key_loader
    def encode_key(identity):
        return KEYS[identity]

    @jwt.decode_key_loader
    def decode_key(unverified_claims, unverified_headers):
        return KEYS[unverified_claims["identity"]]

    async with app.app_context():
        token = create_access_token(identity="bob")
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            assert decode_token(token)["identity"] == "bob"


async def test_expired_token_loader_without_argument_still_answers_and_warns() -> None:
    app = Quart(__name__)
    app.config["JWT_SECRET_KEY"] = "super-secret-that-is-32-bytes-long"
    jwt = JWTManager(app)

    @jwt.expired_token_loader
    def my_expired_token_callback():
        return jsonify({"status": 401, "sub_status": 42, "msg": "The token has expired"}), 401

    @app.route("/protected")
    @jwt_required
    async def protected():
        return jsonify(logged_in_as=get_jwt_identity()), 200

    async with app.app_context():
        old = create_access_token("alice", expires_delta=timedelta(seconds=-1))
    client = app.test_client()
    with pytest.warns(DeprecationWarning, match=EXPIRED_WARNING):
        response = await client.get("/protected", headers={"Authorization": f"Bearer {old}"})
    assert response.status_code == 401
    assert await response.get_json() == {
        "status": 401,
        "sub_status": 42,
        "msg": "The token has expired",
    }
    # A token that is not expired never reaches it.
    async with app.app_context():
        fresh = create_access_token("alice", expires_delta=timedelta(minutes=5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        response = await client.get("/protected", headers={"Authorization": f"Bearer {fresh}"})
    assert response.status_code == 200
