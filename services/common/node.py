"""Building an example node, and what its endpoints need from it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from quart import Quart, current_app

from revsync import RevSync
from revsync.jwt import JWTManager
from services.api.settings import ConfigError
from services.common import errors
from services.common.errors import ApiError, field, json_object
from services.common.logs import configure_logging

USERS = {"test": "test"}
"""The seed program's single user."""


def current_revsync() -> RevSync:
    """The RevSync of the app serving this request."""
    ext: RevSync = current_app.extensions["revsync"]
    return ext


def create_node(
    import_name: str, config: Mapping[str, Any], log_level: str, log_format: str = "console"
) -> tuple[Quart, RevSync]:
    """A Quart app with ``config``, RevSync, the JWT layer and JSON errors; the caller
    adds its endpoints.  ConfigError when RevSync refuses the settings."""
    configure_logging(log_level, log_format)
    app = Quart(import_name)
    app.config.update(config)
    try:
        revsync = RevSync(app)
    except (ValueError, ImportError) as exc:
        raise ConfigError(str(exc)) from None
    JWTManager(app)
    errors.register(app)
    return app, revsync


@contextlib.contextmanager
def exit_on_bad_settings(service: str) -> Iterator[None]:
    """Around building the app at import: a bad setting stops the process with a
    one-line message instead of a traceback."""
    try:
        yield
    except ConfigError as exc:
        sys.exit(f"{service}: cannot start: {exc}")


async def credentials() -> tuple[str, dict[str, Any]]:
    """The login body's username, and the body, when the password is that user's;
    401 otherwise."""
    body = await json_object()
    username = field(body, "username")
    password = field(body, "password")
    if USERS.get(username) != password:
        raise ApiError(401, "Bad username or password")
    return username, body
