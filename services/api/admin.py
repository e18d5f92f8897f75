"""Admin endpoints, guarded by ``REVSYNC_ADMIN_TOKEN`` (sent as the X-Admin-Token header).

- POST /admin/revoke            {"jti": str, "exp": unix time, "identity": any}
  (exp and identity optional)
- POST /admin/unrevoke          {"jti": str}
- POST /admin/revoke-identity   {"identity": any JSON value}: every token issued up to now
- POST /admin/unrevoke-identity {"identity": ...}: lifts the cut-off
- GET  /admin/revocations?identity=NAME: that identity's live revocations

A jti revoked without its ``exp`` is kept for the longest token lifetime, so it
outlives the token whatever it was.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from quart import Blueprint, Response, current_app, jsonify, request

from revsync import Change
from revsync.events import MAX_KEY_CHARS
from services.common.errors import ApiError, field, json_object, stored
from services.common.node import current_revsync

blueprint = Blueprint("admin", __name__, url_prefix="/admin")
HEADER = "X-Admin-Token"
MAX_IDENTITY_CHARS = MAX_KEY_CHARS  # what a bus event can carry (revsync.events)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def admin_required(view: F) -> F:
    """Answer 401 without the header, 403 with a wrong one or when admin is disabled."""

    @wraps(view)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        expected: bytes | None = current_app.extensions["revsync.api"].admin_token
        if expected is None:
            raise ApiError(403, "admin API disabled: REVSYNC_ADMIN_TOKEN is not set on this node")
        given = request.headers.get(HEADER)
        if not given:
            raise ApiError(401, f"missing {HEADER} header")
        if not hmac.compare_digest(given.encode(), expected):
            raise ApiError(403, "invalid admin token")
        return await view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


def query_identity() -> str:
    """The ``identity`` query parameter, required."""
    identity = request.args.get("identity")
    if not identity:
        raise ApiError(400, "missing query parameter: identity")
    return identity


def _change(change: Change) -> dict[str, Any]:
    return {
        "seq": change.seq,
        "kind": str(change.kind),
        "key": change.key,
        "revoked": change.revoked,
        "expires_at": change.expires_at,
        "identity": change.identity,
        "cutoff": change.cutoff,
        "created_at": change.created_at,
    }


def _identity(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_IDENTITY_CHARS:
        raise ApiError(400, f"field identity is longer than {MAX_IDENTITY_CHARS} characters")
    return value


async def _write(action: Callable[[], Awaitable[Change]]) -> tuple[Response, int]:
    try:
        change = await stored(action(), "revocation store unavailable; nothing was changed")
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return jsonify({"msg": "ok", "change": _change(change)}), 200


@blueprint.route("/revoke", methods=["POST"])
@admin_required
async def revoke() -> tuple[Response, int]:
    body = await json_object()
    jti = field(body, "jti")
    exp = body.get("exp")
    if exp is None:
        exp = time.time() + current_revsync().settings.cutoff_ttl
    elif isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        raise ApiError(400, "field exp must be a unix time (number)")
    identity = _identity(body.get("identity"))
    return await _write(lambda: current_revsync().revoke_jti(jti, exp, identity=identity))


@blueprint.route("/unrevoke", methods=["POST"])
@admin_required
async def unrevoke() -> tuple[Response, int]:
    jti = field(await json_object(), "jti")
    return await _write(lambda: current_revsync().unrevoke(jti))


@blueprint.route("/revoke-identity", methods=["POST"])
@admin_required
async def revoke_identity() -> tuple[Response, int]:
    identity = _identity(field(await json_object(), "identity", (str, int, float, dict, list)))
    return await _write(lambda: current_revsync().revoke_identity(identity))


@blueprint.route("/unrevoke-identity", methods=["POST"])
@admin_required
async def unrevoke_identity() -> tuple[Response, int]:
    identity = _identity(field(await json_object(), "identity", (str, int, float, dict, list)))
    return await _write(lambda: current_revsync().unrevoke_identity(identity))


@blueprint.route("/revocations", methods=["GET"])
@admin_required
async def revocations() -> tuple[Response, int]:
    identity = _identity(query_identity())
    rows = await stored(
        current_revsync().list_revocations(identity), "revocation store unavailable"
    )
    return jsonify({"identity": identity, "revocations": [_change(r) for r in rows]}), 200
