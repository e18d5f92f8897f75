"""Token revocation with an in-memory blacklist: quart-jwt-extended's blacklist example.

The only line that differs from an app written for quart-jwt-extended is the import
of the JWT names.  The blacklist here is a set in this one process; revsync's own
extension replaces it with one shared, durably, by every node.
"""

from quart import Quart, jsonify, request
from quart.typing import ResponseReturnValue

from revsync.jwt import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt_identity,
    get_raw_jwt,
    jwt_refresh_token_required,
    jwt_required,
)

app = Quart(__name__)
app.config["JWT_SECRET_KEY"] = "super-secret"  # change this in any real deployment
app.config["JWT_BLACKLIST_ENABLED"] = True
app.config["JWT_BLACKLIST_TOKEN_CHECKS"] = ["access", "refresh"]
jwt = JWTManager(app)

# The jti of every token that logged out.  A real app keeps this somewhere shared
# and durable (a database, Redis, ...), and drops entries once their token expires.
blacklist: set[str] = set()


@jwt.token_in_blacklist_loader
def check_if_token_in_blacklist(decrypted_token: dict[str, object]) -> bool:
    """A token is refused once its jti is in the blacklist."""
    return decrypted_token["jti"] in blacklist


@app.route("/login", methods=["POST"])
async def login() -> ResponseReturnValue:
    """Trade the test user's credentials for an access and a refresh token."""
    body = await request.get_json(silent=True) or {}
    username = body.get("username")
    password = body.get("password")
    if username != "test" or password != "test":
        return jsonify({"msg": "Bad username or password"}), 401
    tokens = {
        "access_token": create_access_token(identity=username),
        "refresh_token": create_refresh_token(identity=username),
    }
    return jsonify(tokens), 200


@app.route("/refresh", methods=["POST"])
@jwt_refresh_token_required
async def refresh() -> ResponseReturnValue:
    """Trade a refresh token for a new access token."""
    current_user = get_jwt_identity()
    return jsonify({"access_token": create_access_token(identity=current_user)}), 200


@app.route("/logout", methods=["DELETE"])
@jwt_required
async def logout() -> ResponseReturnValue:
    """Revoke the access token of this request."""
    blacklist.add(get_raw_jwt()["jti"])
    return jsonify({"msg": "Successfully logged out"}), 200


@app.route("/logout2", methods=["DELETE"])
@jwt_refresh_token_required
async def logout2() -> ResponseReturnValue:
    """Revoke the refresh token of this request."""
    blacklist.add(get_raw_jwt()["jti"])
    return jsonify({"msg": "Successfully logged out"}), 200


@app.route("/protected", methods=["GET"])
@jwt_required
async def protected() -> ResponseReturnValue:
    """Any valid, unrevoked access token may see this."""
    return jsonify({"hello": "world"})
