"""The seed program's endpoints, unchanged in methods, bodies and answers, on revsync.

Logout revokes through ``RevSync`` (durable, then broadcast to every node); when
the store cannot record it the caller gets 503 and the token stays valid.
"""

from __future__ import annotations

from quart import Blueprint, Response, current_app, jsonify

from revsync import RevSync, StoreError
from revsync.jwt import (
    create_access_token,
    create_refresh_token,
    get_jwt_identity,
    get_raw_jwt,
    jwt_refresh_token_required,
    jwt_required,
)
from services.api.errors import ApiError, error, field, json_object

blueprint = Blueprint("tokens", __name__)

# The seed program's single user.
USERS = {"test": "test"}


def _revsync() -> RevSync:
    ext: RevSync = current_app.extensions["revsync"]
    return ext


@blueprint.route("/login", methods=["POST"])
async def login() -> tuple[Response, int]:
    body = await json_object()
    username = field(body, "username")
    password = field(body, "password")
    if USERS.get(username) != password:
        return error(401, "Bad username or password")
    ret = {
        "access_token": create_access_token(identity=username),
        "refresh_token": create_refresh_token(identity=username),
    }
    return jsonify(ret), 200


@blueprint.route("/refresh", methods=["POST"])
@jwt_refresh_token_required
async def refresh() -> tuple[Response, int]:
    current_user = get_jwt_identity()
    return jsonify({"access_token": create_access_token(identity=current_user)}), 200


async def _revoke_current() -> tuple[Response, int]:
    try:
        await _revsync().revoke(get_raw_jwt())
    except StoreError:
        raise ApiError(
            503, "revocation store unavailable; the token was NOT revoked, try again"
        ) from None
    return jsonify({"msg": "Successfully logged out"}), 200


@blueprint.route("/logout", methods=["DELETE"])
@jwt_required
async def logout() -> tuple[Response, int]:
    return await _revoke_current()


@blueprint.route("/logout2", methods=["DELETE"])
@jwt_refresh_token_required
async def logout2() -> tuple[Response, int]:
    return await _revoke_current()


@blueprint.route("/logout/all", methods=["POST"])
@jwt_required
async def logout_all() -> tuple[Response, int]:
    try:
        change = await _revsync().revoke_subject(get_jwt_identity())
    except StoreError:
        raise ApiError(
            503, "revocation store unavailable; nothing was revoked, try again"
        ) from None
    return jsonify({"msg": "Every token of this user is revoked", "seq": change.seq}), 200


@blueprint.route("/protected", methods=["GET"])
@jwt_required
async def protected() -> Response:
    return jsonify({"hello": "world"})
