"""A small app for the issue-13 attacks: JWTManager + RevSync, /protected and /logout."""

from __future__ import annotations

from typing import Any

from quart import Quart, jsonify

from revsync import RevSync
from revsync.jwt import JWTManager, create_access_token, get_raw_jwt, jwt_required

REVOKED = {"msg": "Token has been revoked"}


def build(**settings: Any) -> tuple[Quart, RevSync]:
    app = Quart(__name__)
    app.config.update(JWT_SECRET_KEY="x" * 32, JWT_BLACKLIST_ENABLED=True)
    app.config.update(settings.pop("config", {}))
    JWTManager(app)
    ext = RevSync(app, **settings)

    @app.route("/protected")
    @jwt_required
    async def protected() -> Any:
        return jsonify(hello="world")

    @app.route("/logout", methods=["DELETE"])
    @jwt_required
    async def logout() -> Any:
        await ext.revoke(get_raw_jwt())
        return jsonify(msg="Successfully logged out")

    return app, ext


async def bearer(app: Quart, identity: str = "alice") -> dict[str, str]:
    async with app.app_context():
        return {"Authorization": f"Bearer {create_access_token(identity=identity)}"}


def decode(app: Quart, headers: dict[str, str]) -> dict[str, Any]:
    import jwt

    token = headers["Authorization"].split()[1]
    return jwt.decode(token, app.config["JWT_SECRET_KEY"], algorithms=["HS256"])
