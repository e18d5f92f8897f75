"""The token registry's endpoints (REVSYNC_TRACK_TOKENS=true; 404 otherwise).

User-facing, with the caller's access token:

- GET    /sessions        the caller's live tokens with their metadata ("my sessions")
- DELETE /sessions/<jti>  revoke one of them ("log out this session"); a jti that is
                          not one of the caller's answers 404

Admin, with the X-Admin-Token header:

- GET  /admin/tokens?identity=NAME  that identity's live tokens
- POST /admin/tokens/<jti>/revoke   revoke any registered token (404 if unknown)
- POST /admin/tokens/<jti>/unrevoke lift that revocation (404 if unknown)
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from quart import Blueprint, Response, jsonify

from revsync.changes import canonical_identity
from revsync.jwt import get_jwt_identity, get_raw_jwt, jwt_required
from revsync.registry import Registry, TokenRecord
from services.api.admin import admin_required, query_identity
from services.common.errors import ApiError, stored
from services.common.node import current_revsync

blueprint = Blueprint("sessions", __name__)
T = TypeVar("T")


def _registry() -> Registry:
    ext = current_revsync()
    if not ext.settings.track_tokens:
        raise ApiError(404, "the token registry is off on this node (REVSYNC_TRACK_TOKENS)")
    return ext.registry


def _record(record: TokenRecord, current_jti: object = None) -> dict[str, Any]:
    shown = record.as_dict()
    shown.pop("seq")
    if current_jti is not None:
        shown["current"] = record.jti == current_jti
    return shown


async def _store_call(call: Awaitable[T]) -> T:
    return await stored(call, "token store unavailable; nothing was changed")


@blueprint.route("/sessions", methods=["GET"])
@jwt_required
async def my_sessions() -> tuple[Response, int]:
    records = await _store_call(_registry().active_tokens(get_jwt_identity()))
    current = get_raw_jwt().get("jti")
    return jsonify({"sessions": [_record(r, current) for r in records]}), 200


@blueprint.route("/sessions/<jti>", methods=["DELETE"])
@jwt_required
async def end_session(jti: str) -> tuple[Response, int]:
    record = await _store_call(_registry().token(jti))
    if record is None or record.identity != canonical_identity(get_jwt_identity()):
        raise ApiError(404, "no such session")
    change = await _store_call(
        current_revsync().revoke_jti(record.jti, record.expires_at, identity=record.identity)
    )
    return jsonify({"msg": "Session logged out", "jti": jti, "seq": change.seq}), 200


@blueprint.route("/admin/tokens", methods=["GET"])
@admin_required
async def identity_tokens() -> tuple[Response, int]:
    identity = query_identity()
    records = await _store_call(_registry().active_tokens(identity))
    return jsonify({"identity": identity, "tokens": [_record(r) for r in records]}), 200


async def _known(jti: str) -> TokenRecord:
    record: TokenRecord | None = await _store_call(_registry().token(jti))
    if record is None:
        raise ApiError(404, f"no registered token with jti {jti!r}")
    return record


@blueprint.route("/admin/tokens/<jti>/revoke", methods=["POST"])
@admin_required
async def revoke_token(jti: str) -> tuple[Response, int]:
    record = await _known(jti)
    change = await _store_call(
        current_revsync().revoke_jti(record.jti, record.expires_at, identity=record.identity)
    )
    return jsonify({"msg": "ok", "jti": jti, "seq": change.seq}), 200


@blueprint.route("/admin/tokens/<jti>/unrevoke", methods=["POST"])
@admin_required
async def unrevoke_token(jti: str) -> tuple[Response, int]:
    record = await _known(jti)
    change = await _store_call(current_revsync().unrevoke(record.jti))
    return jsonify({"msg": "ok", "jti": jti, "seq": change.seq}), 200
