"""The example API node: ``hypercorn services.api.app:app --bind 127.0.0.1:8000``.

Configured only by environment variables (``services.api.settings``).  A bad or
missing setting stops the process with a one-line message instead of serving.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from quart import Quart

from revsync.health import health_blueprint
from revsync.prometheus import metrics_blueprint
from services.api import admin, sessions, tokens
from services.api.settings import from_env
from services.common.node import create_node, exit_on_bad_settings


@dataclass(frozen=True, slots=True)
class ApiState:
    """What the endpoints need besides RevSync, kept in ``app.extensions["revsync.api"]``."""

    admin_token: bytes | None


def create_app(environ: Mapping[str, str] | None = None) -> Quart:
    """Build the node from ``environ`` (default: os.environ); raise ConfigError when invalid."""
    settings = from_env(environ)
    app, revsync = create_node(__name__, settings.config, settings.log_level, settings.log_format)
    app.extensions["revsync.api"] = ApiState(settings.admin_token)
    app.register_blueprint(tokens.blueprint)
    app.register_blueprint(admin.blueprint)
    app.register_blueprint(health_blueprint())
    app.register_blueprint(metrics_blueprint(revsync))
    app.register_blueprint(sessions.blueprint)
    return app


with exit_on_bad_settings("services.api"):
    app = create_app()
