"""Where a request carries its token.

Each location is a function ``(cfg, request_type) -> encoded token`` that raises
:class:`NoAuthorizationError` when the location holds no token and
:class:`InvalidHeaderError` when it holds one in the wrong shape.  ``JWT_TOKEN_LOCATION``
picks which ones run, in order; adding cookies, query string or JSON body means adding
a function to :data:`TOKEN_GETTERS` (and its name to ``config.KNOWN_LOCATIONS``).
"""

from __future__ import annotations

from collections.abc import Callable

from quart import request

from revsync.jwt.config import JWTConfig
from revsync.jwt.exceptions import InvalidHeaderError, NoAuthorizationError

TokenGetter = Callable[[JWTConfig, str], str]


def _token_from_headers(cfg: JWTConfig, request_type: str) -> str:
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
        return words[0]
    for field in value.split(","):
        words = field.split()
        if words and words[0] == scheme:
            if len(words) == 2:
                return words[1]
            break
    msg = f"Bad {name} header. Expected value '{scheme} <JWT>'"
    raise InvalidHeaderError(msg)


TOKEN_GETTERS: dict[str, TokenGetter] = {"headers": _token_from_headers}


def find_token(cfg: JWTConfig, request_type: str) -> str:
    """The encoded token of the current request, from the first location that has one."""
    locations = cfg.token_locations
    if len(locations) == 1:
        return TOKEN_GETTERS[locations[0]](cfg, request_type)
    errors = []
    for location in locations:
        try:
            return TOKEN_GETTERS[location](cfg, request_type)
        except NoAuthorizationError as exc:
            errors.append(str(exc))
    msg = f"Missing JWT in {', '.join(locations[:-1])} or {locations[-1]} ({'; '.join(errors)})"
    raise NoAuthorizationError(msg)
