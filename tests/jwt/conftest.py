"""An app factory with one route per decorator form, and request helpers."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from quart import Quart, jsonify

from revsync.jwt import (
    JWTManager,
    fresh_jwt_required,
    get_current_user,
    get_jwt_claims,
    get_jwt_identity,
    get_raw_jwt,
    get_raw_jwt_header,
    jwt_optional,
    jwt_refresh_token_required,
    jwt_required,
)

SECRET = "a-test-secret-that-is-long-enough-for-hs256"

AppFactory = Callable[..., tuple[Quart, JWTManager]]


def _describe() -> Any:
    return jsonify(
        identity=get_jwt_identity(),
        claims=get_jwt_claims(),
        type=get_raw_jwt().get("type"),
        kid=get_raw_jwt_header().get("kid"),
        user=get_current_user(),
    )


def build_app(**config: Any) -> tuple[Quart, JWTManager]:
    """A Quart app with JWTManager and a route for every decorator, bare and called."""
    app = Quart(__name__)
    app.config["JWT_SECRET_KEY"] = SECRET
    app.config.update(config)
    manager = JWTManager(app)

    routes: dict[str, Any] = {
        "/protected": jwt_required,
        "/protected-called": jwt_required(),
        "/optional": jwt_optional,
        "/optional-called": jwt_optional(),
        "/fresh": fresh_jwt_required,
        "/fresh-called": fresh_jwt_required(),
        "/refresh": jwt_refresh_token_required,
        "/refresh-called": jwt_refresh_token_required(),
        "/v4-optional": jwt_required(optional=True),
        "/v4-fresh": jwt_required(fresh=True),
        "/v4-refresh": jwt_required(refresh=True),
    }
    for path, decorator in routes.items():

        async def view() -> Any:
            return _describe()

        view.__name__ = path.strip("/").replace("-", "_")
        app.add_url_rule(path, view_func=decorator(view), methods=["GET", "POST"])

    @app.get("/sync-view")
    @jwt_required
    def sync_view() -> Any:
        return {"identity": get_jwt_identity()}

    return app, manager


@pytest.fixture
def make_app() -> AppFactory:
    """Build a test app with extra ``JWT_*`` settings as keywords."""
    return build_app


async def call(
    app: Quart,
    path: str,
    token: str | None = None,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """Request ``path`` through the real test client; return ``(status, json body)``."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    client = app.test_client()
    response = await client.open(path, method=method, headers=sent)
    return response.status_code, await response.get_json()


def b64(data: bytes) -> str:
    """Base64url without padding, as in a JWT."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: Any, signature: bytes = b"sig") -> str:
    """A token assembled by hand, for shapes PyJWT would refuse to produce."""
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )
