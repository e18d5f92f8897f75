"""The seed program's endpoints, unchanged in methods, bodies and answers, on revsync.

Logout revokes through ``RevSync`` (durable, then broadcast to every node); when
the store cannot record it the caller gets 503 and the token stays valid.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from revsync import RefreshTokenReused, StoreError, UnknownToken
from revsync.jwt import (
    create_access_token,
    create_refresh_token,
    get_jwt_identity,
    get_raw_jwt,
    jwt_refresh_token_required,
    jwt_required,
)
from services.common.errors import ApiError, error, stored
from services.common.node import credentials, current_revsync

blueprint = Blueprint("tokens", __name__)
REGISTRY_DOWN = "token registry unavailable; try again"


@blueprint.route("/login", methods=["POST"])
async def login() -> tuple[Response, int]:
    username, body = await credentials()
    if not current_revsync().settings.track_tokens:
        access = create_access_token(identity=username)
        return jsonify(
            access_token=access, refresh_token=create_refresh_token(identity=username)
        ), 200
    try:
        issued = await current_revsync().registry.issue_tokens(
            username, metadata=_client_metadata(body)
        )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    except StoreError:
        raise ApiError(503, REGISTRY_DOWN) from None
    return jsonify(access_token=issued.access_token, refresh_token=issued.refresh_token), 200


@blueprint.route("/refresh", methods=["POST"])
@jwt_refresh_token_required
async def refresh() -> tuple[Response, int]:
    if not current_revsync().settings.track_tokens:
        return jsonify(access_token=create_access_token(identity=get_jwt_identity())), 200
    try:
        issued = await stored(current_revsync().registry.refresh(get_raw_jwt()), REGISTRY_DOWN)
    except (RefreshTokenReused, UnknownToken):
        return error(401, "Token has been revoked")
    ret = {"access_token": issued.access_token}
    if issued.refresh_token is not None:
        ret["refresh_token"] = issued.refresh_token
    return jsonify(ret), 200


def _client_metadata(body: dict[str, object]) -> dict[str, str]:
    """What the registry keeps about the client: its user agent, address, device label."""
    metadata = {
        "user_agent": request.headers.get("User-Agent", "")[:256],
        "ip": request.remote_addr or "",
    }
    device = body.get("device")
    if device is not None:
        if not isinstance(device, str):
            raise ApiError(400, "field device must be a string")
        metadata["device"] = device
    return metadata


async def _revoke_current() -> tuple[Response, int]:
    await stored(
        current_revsync().revoke(get_raw_jwt()),
        "revocation store unavailable; the token was NOT revoked, try again",
    )
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
    change = await stored(
        current_revsync().revoke_identity(get_jwt_identity()),
        "revocation store unavailable; nothing was revoked, try again",
    )
    return jsonify({"msg": "Every token of this user is revoked", "seq": change.seq}), 200


@blueprint.route("/protected", methods=["GET"])
@jwt_required
async def protected() -> Response:
    return jsonify({"hello": "world"})
