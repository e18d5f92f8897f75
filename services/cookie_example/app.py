"""The cookie example node: ``hypercorn services.cookie_example.app:app --bind 127.0.0.1:8000``.

A browser logs in once and from then on carries its tokens in cookies:

``POST /auth/login``      ``{"username", "password"}`` -> sets four cookies: the access
                          and refresh tokens (HttpOnly) and their CSRF values (readable
                          by the page's scripts).
``GET  /protected``       any valid, unrevoked access cookie (a safe method: no CSRF).
``POST /protected``       the same, plus the ``X-CSRF-TOKEN`` header, copied by the page
                          from the ``csrf_access_token`` cookie (double submit).
``POST /auth/refresh``    refresh cookie + ``X-CSRF-TOKEN`` from ``csrf_refresh_token``
                          -> a new access cookie.
``POST /auth/logout``     revokes this session's access and refresh tokens on every node
                          and deletes the cookies.
``POST /auth/logout-everywhere``  revokes every token of the user, on every device and
                          every node (``RevSync.revoke_identity``), and deletes the cookies.
``GET  /healthz``, ``GET /readyz``  liveness, and readiness (synced with the store).

Revocations go through ``RevSync``: durable in the store first, then broadcast; when
the store cannot record one the caller gets 503 and nothing was revoked.
"""

from __future__ import annotations

from collections.abc import Mapping

from jwt import InvalidTokenError
from quart import Blueprint, Quart, Response, current_app, jsonify, request

from revsync.health import health_blueprint
from revsync.jwt import (
    JWTExtendedException,
    create_access_token,
    create_refresh_token,
    decode_token,
    get_jwt_identity,
    get_raw_jwt,
    jwt_refresh_token_required,
    jwt_required,
    set_access_cookies,
    set_refresh_cookies,
    unset_jwt_cookies,
)
from services.common.errors import stored
from services.common.node import create_node, credentials, current_revsync, exit_on_bad_settings
from services.cookie_example.settings import AUTH_PREFIX, from_env

blueprint = Blueprint("cookie_example", __name__)


@blueprint.route(f"{AUTH_PREFIX}/login", methods=["POST"])
async def login() -> tuple[Response, int]:
    username, _ = await credentials()
    response = jsonify({"msg": "Logged in", "identity": username})
    set_access_cookies(response, create_access_token(identity=username, fresh=True))
    set_refresh_cookies(response, create_refresh_token(identity=username))
    return response, 200


@blueprint.route(f"{AUTH_PREFIX}/refresh", methods=["POST"])
@jwt_refresh_token_required
async def refresh() -> tuple[Response, int]:
    response = jsonify({"msg": "Refreshed"})
    set_access_cookies(response, create_access_token(identity=get_jwt_identity()))
    return response, 200


@blueprint.route(f"{AUTH_PREFIX}/logout", methods=["POST"])
@jwt_required
async def logout() -> tuple[Response, int]:
    """Revoke this session: its access token, and its refresh token when it is valid."""
    sessions = [get_raw_jwt()]
    refresh_token = request.cookies.get(current_app.config["JWT_REFRESH_COOKIE_NAME"])
    if refresh_token:
        try:
            claims = decode_token(refresh_token)
        except (InvalidTokenError, JWTExtendedException):
            claims = {}  # expired or invalid: it opens nothing, so there is nothing to revoke
        if (
            claims.get("type") == "refresh"
            and claims.get(current_app.config["JWT_IDENTITY_CLAIM"]) == get_jwt_identity()
        ):
            sessions.append(claims)
    await stored(
        current_revsync().revoke_many(sessions),
        "revocation store unavailable; you were NOT logged out, try again",
    )
    response = jsonify({"msg": "Successfully logged out"})
    unset_jwt_cookies(response)
    return response, 200


@blueprint.route(f"{AUTH_PREFIX}/logout-everywhere", methods=["POST"])
@jwt_required
async def logout_everywhere() -> tuple[Response, int]:
    """Revoke every token of this user issued up to now, on every device."""
    change = await stored(
        current_revsync().revoke_identity(get_jwt_identity()),
        "revocation store unavailable; nothing was revoked, try again",
    )
    response = jsonify({"msg": "Logged out everywhere", "seq": change.seq})
    unset_jwt_cookies(response)
    return response, 200


@blueprint.route("/protected", methods=["GET", "POST"])
@jwt_required
async def protected() -> Response:
    return jsonify({"hello": get_jwt_identity(), "method": request.method})


def create_app(environ: Mapping[str, str] | None = None) -> Quart:
    """Build the node from ``environ`` (default: os.environ); raise ConfigError when invalid."""
    settings = from_env(environ)
    app, _ = create_node(__name__, settings.config, settings.log_level, settings.log_format)
    app.register_blueprint(blueprint)
    app.register_blueprint(health_blueprint(("ready", "node_id")))
    return app


with exit_on_bad_settings("services.cookie_example"):
    app = create_app()
