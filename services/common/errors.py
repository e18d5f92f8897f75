"""Clean JSON answers for bad requests: every 4xx is ``{"msg": ...}``, never HTML or a 500."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, TypeVar

from quart import Quart, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from revsync import StoreError
from revsync._logging import get_logger

logger = get_logger("revsync.api")


class ApiError(Exception):
    """Raised by a handler to answer ``status`` with ``{"msg": msg}``."""

    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg


def error(status: int, msg: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"msg": msg, **extra}), status


T = TypeVar("T")


async def stored(call: Awaitable[T], msg: str) -> T:
    """``await call``; when the store could not do it (StoreError), ApiError 503 ``msg``."""
    try:
        return await call
    except StoreError:
        raise ApiError(503, msg) from None


async def json_object() -> dict[str, Any]:
    """The request's body as a JSON object, or ApiError 415/400."""
    if not request.is_json:
        raise ApiError(415, "Content-Type must be application/json")
    raw = await request.get_data(as_text=False)
    try:
        body = json.loads(raw)
    except ValueError:  # bad JSON, and bytes that are no Unicode at all
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"request body must be a JSON object, not {type(body).__name__}")
    return body


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    """``body[name]``, checked to be present and of ``kind`` (strings must be non-empty)."""
    if name not in body or body[name] is None:
        raise ApiError(400, f"missing field: {name}")
    value = body[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise ApiError(400, f"field {name} has the wrong type ({type(value).__name__})")
    if isinstance(value, str) and not value:
        raise ApiError(400, f"field {name} must not be empty")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def register(app: Quart) -> None:
    """JSON error handlers for ApiError, HTTP errors (404, 405, 413, ...) and the rest."""

    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> tuple[Response, int]:
        return error(exc.status, exc.msg)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        return error(status, exc.description or exc.name)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> tuple[Response, int]:
        logger.exception("revsync.api.unexpected_error", path=request.path)
        return error(500, "internal error")
