"""Building an example node, and what its endpoints need from it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from quart import Quart, current_app

from revsync import RevSync
from revsync._logging import get_logger
from revsync.jwt import JWTManager
from services.api.settings import ConfigError
from services.common import errors
from services.common.errors import ApiError, field, json_object
from services.common.logs import configure_logging

logger = get_logger("revsync.api")

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
    freeze_heap_once_ready(app, revsync)
    return app, revsync


def freeze_heap_once_ready(app: Quart, revsync: RevSync) -> None:
    """Once the node is first ready, collect garbage and freeze what is left
    (``gc.freeze``): the modules, the app and the start-up snapshot move out of the
    garbage collector's sight.

    Why: a full collection walks every tracked object, here some 70,000 of them plus
    one reference per revocation held, and stops the whole process while it does:
    measured at 55 ms of CPU on the benchmark machine, so 100-250 ms on a node that
    shares its cores with request handling, the slowest revocations of
    docs/benchmarks.md ("under load").  After the freeze a full collection takes
    about a millisecond.  What is frozen is what the node keeps for its whole life
    anyway; garbage made later is collected as before.
    """
    waiting: list[asyncio.Task[None]] = []

    async def freeze() -> None:
        await revsync.subscriber.synced.wait()  # snapshot loaded, heartbeat back
        collected = gc.collect()
        gc.freeze()
        logger.info("revsync.api.heap_frozen", objects=gc.get_freeze_count(), collected=collected)

    @app.before_serving
    async def start() -> None:
        waiting.append(asyncio.create_task(freeze(), name="services-freeze-heap"))

    @app.after_serving
    async def stop() -> None:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        waiting.clear()


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
