"""Variant (c): quart-jwt-extended's redis_blacklist example done right.

One ``redis.asyncio`` GET per request (the example's loader does a blocking GET),
on revsync.jwt with revocation off, so the JWT work equals (a)'s and the difference
is the lookup: a Redis round trip instead of an in-memory one.  Revoked jtis are
keys ``revoked:<jti>`` with the token's remaining lifetime as TTL.

Environment: ``JWT_SECRET_KEY``, ``BENCH_REDIS_URL``.
"""

from __future__ import annotations

import gc
import os
from datetime import timedelta

import redis.asyncio as aioredis
from quart import Quart, Response, jsonify
from quart.typing import ResponseReturnValue

from revsync.jwt import (
    JWTManager,
    create_access_token,
    get_raw_jwt,
    verify_jwt_in_request,
)

app = Quart(__name__)
app.config["JWT_SECRET_KEY"] = os.environ["JWT_SECRET_KEY"]
app.config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(days=1)
JWTManager(app)
store = aioredis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


@app.route("/login", methods=["POST"])
async def login() -> ResponseReturnValue:
    return jsonify({"access_token": create_access_token(identity="test")}), 200


@app.route("/protected", methods=["GET"])
async def protected() -> ResponseReturnValue:
    await verify_jwt_in_request()
    if await store.get("revoked:" + get_raw_jwt()["jti"]) is not None:
        return jsonify({"msg": "Token has been revoked"}), 401
    return jsonify({"hello": "world"})


@app.route("/healthz", methods=["GET"])
async def healthz() -> Response:
    return jsonify({"status": "alive"})


@app.before_serving
async def freeze_heap() -> None:
    # As the api node does once ready (services/common/node.py), so that (a) and (c)
    # still differ only in the lookup.
    gc.collect()
    gc.freeze()


@app.after_serving
async def close() -> None:
    await store.aclose()
