"""The example API node: ``hypercorn services.api.app:app --bind 127.0.0.1:8000``.

Configured only by environment variables (``services.api.settings``).  A bad or
missing setting stops the process with a one-line message instead of serving.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry
from quart import Quart

from revsync import RevSync
from revsync.jwt import JWTManager
from services.api import admin, errors, health, sessions, tokens
from services.api.metrics import registry_for
from services.api.settings import ConfigError, from_env


@dataclass(frozen=True, slots=True)
class ApiState:
    """What the endpoints need besides RevSync, kept in ``app.extensions["revsync.api"]``."""

    admin_token: bytes | None
    registry: CollectorRegistry


def create_app(environ: Mapping[str, str] | None = None) -> Quart:
    """Build the node from ``environ`` (default: os.environ); raise ConfigError when invalid."""
    settings = from_env(environ)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.log_level.upper()]
        )
    )
    app = Quart(__name__)
    app.config.update(settings.config)
    try:
        revsync = RevSync(app)
    except (ValueError, ImportError) as exc:
        raise ConfigError(str(exc)) from None
    JWTManager(app)
    app.extensions["revsync.api"] = ApiState(settings.admin_token, registry_for(revsync))
    errors.register(app)
    app.register_blueprint(tokens.blueprint)
    app.register_blueprint(admin.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(sessions.blueprint)
    return app


try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"services.api: cannot start: {exc}")
