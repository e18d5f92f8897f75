"""Where a request carries its token: headers, cookies, query string, JSON body.

Each location is a coroutine function ``(cfg, request_type) -> (encoded token, CSRF
value or None)`` that raises :class:`NoAuthorizationError` when the location holds no
token, :class:`InvalidHeaderError` when the ``Authorization`` header has the wrong
shape, and :class:`CSRFError` when a cookie token comes without its CSRF value.
``JWT_TOKEN_LOCATION`` picks which ones run, in order: the first location holding a
token wins, and only "no token here" moves on to the next one, as in
quart-jwt-extended.  A token that is found but invalid is never skipped in favour of
another location.

Only the JSON location (and the optional CSRF form field) reads the request body;
the others look at what the server already parsed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from quart import request

from revsync.jwt.config import JWTConfig
from revsync.jwt.exceptions import (
    CSRFError,
    InvalidHeaderError,
    JWTDecodeError,
    NoAuthorizationError,
)

Found = tuple[str, str | None]
"""An encoded token and the CSRF double-submit value to check it against (or None)."""

TokenGetter = Callable[[JWTConfig, str], Awaitable[Found]]


async def _token_from_headers(cfg: JWTConfig, request_type: str) -> Found:
    """The token in ``<JWT_HEADER_NAME>: <JWT_HEADER_TYPE> <JWT>``.

    The header may list several comma-separated credentials; the first whose scheme
    is ``JWT_HEADER_TYPE`` is used, as in quart-jwt-extended.
    """
    name = cfg.header_name
    value = request.headers.get(name)
    if not value:
        msg = f"Missing {name} Header"
        raise NoAuthorizationError(msg)
    scheme = cfg.header_type
    if not scheme:
        words = value.split()
        if len(words) != 1:
            msg = f"Bad {name} header. Expected value '<JWT>'"
            raise InvalidHeaderError(msg)
        return words[0], None
    for field in value.split(","):
        words = field.split()
        if words and words[0] == scheme:
            if len(words) == 2:
                return words[1], None
            break
    msg = f"Bad {name} header. Expected value '{scheme} <JWT>'"
    raise InvalidHeaderError(msg)


async def _token_from_cookies(cfg: JWTConfig, request_type: str) -> Found:
    """The token in its cookie, and on a CSRF-checked method the double-submit value.

    The CSRF value comes from the ``JWT_*_CSRF_HEADER_NAME`` header, or with
    ``JWT_CSRF_CHECK_FORM`` from the ``JWT_*_CSRF_FIELD_NAME`` form field.
    """
    places = cfg.places_for(request_type)
    token = request.cookies.get(places.cookie_name)
    if not token:
        msg = f'Missing cookie "{places.cookie_name}"'
        raise NoAuthorizationError(msg)
    if not (cfg.csrf_protect and request.method in cfg.csrf_methods):
        return token, None
    csrf_value = request.headers.get(places.csrf_header_name)
    if not csrf_value and cfg.csrf_check_form:
        csrf_value = await _form_field(places.csrf_field_name)
    if not csrf_value:
        msg = "Missing CSRF token"
        raise CSRFError(msg)
    return token, csrf_value


async def _form_field(name: str) -> str | None:
    try:
        form = await request.form
    except Exception:  # any body we cannot parse simply has no such field
        return None
    value = form.get(name)
    return value if isinstance(value, str) else None


async def _token_from_query_string(cfg: JWTConfig, request_type: str) -> Found:
    """The token in the ``JWT_QUERY_STRING_NAME`` query parameter (first one if repeated)."""
    name = cfg.query_string_name
    token = request.args.get(name)
    if not token:
        # quart-jwt-extended's message, spelling included.
        msg = f'Missing "{name}" query paramater'
        raise NoAuthorizationError(msg)
    return token, None


async def _token_from_json(cfg: JWTConfig, request_type: str) -> Found:
    """The token under ``JWT_JSON_KEY`` (``JWT_REFRESH_JSON_KEY``) of a JSON object body.

    The body must be sent as ``application/json`` (a ``charset`` parameter is fine).
    A body that is no JSON object, or lacks the key, holds no token; a key whose value
    is not a string holds an invalid one (422).
    """
    if request.mimetype != "application/json":
        msg = "Invalid content-type. Must be application/json."
        raise NoAuthorizationError(msg)
    key = cfg.places_for(request_type).json_key
    body = await _json_body()
    if not isinstance(body, dict) or key not in body:
        msg = f'Missing "{key}" key in json data.'
        raise NoAuthorizationError(msg)
    token = body[key]
    if not isinstance(token, str):
        msg = f'Invalid "{key}" in json data: the token must be a string'
        raise JWTDecodeError(msg)
    return token, None


async def _json_body() -> Any:
    try:
        return await request.get_json(silent=True)
    except (ValueError, RecursionError):  # bytes that are no UTF-8; nesting too deep
        return None


TOKEN_GETTERS: dict[str, TokenGetter] = {
    "headers": _token_from_headers,
    "cookies": _token_from_cookies,
    "query_string": _token_from_query_string,
    "json": _token_from_json,
}
"""Every location of ``config.KNOWN_LOCATIONS``, by name."""


async def find_token(cfg: JWTConfig, request_type: str) -> Found:
    """The encoded token of the current request, from the first location that has one.

    With one location its own message is raised when it holds no token; with several,
    quart-jwt-extended's summary: ``Missing JWT in headers or cookies (<each reason>)``.
    """
    locations = cfg.token_locations
    if len(locations) == 1:
        return await TOKEN_GETTERS[locations[0]](cfg, request_type)
    errors = []
    for location in locations:
        try:
            return await TOKEN_GETTERS[location](cfg, request_type)
        except NoAuthorizationError as exc:
            errors.append(str(exc))
    msg = f"Missing JWT in {', '.join(locations[:-1])} or {locations[-1]} ({'; '.join(errors)})"
    raise NoAuthorizationError(msg)
