"""Test helpers for apps that use revsync: a ready node without Redis.

::

    import revsync.testing

    async def test_logout_refuses_the_token():
        app = create_app()                      # your app, with or without RevSync(app)
        async with revsync.testing.running(app) as ext:
            client = app.test_client()          # or: async with app.test_app() as test_app
            ...
            assert ext.is_revoked(claims)

:func:`running` gives the app a RevSync on the in-process bus (``memory://``) and
an SQLite store in a temporary directory, starts it, waits until it is in sync
(snapshot taken, first heartbeat back), and stops it and removes the directory on
the way out.  Nothing connects to Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from revsync._extension import RevSync

if TYPE_CHECKING:
    from quart import Quart

__all__ = ["running"]


@contextlib.asynccontextmanager
async def running(
    app: Quart,
    *,
    redis_url: str | None = None,
    store_url: str | None = None,
    **settings: Any,
) -> AsyncIterator[RevSync]:
    """The app's RevSync, started and in sync on an in-process bus; stopped after.

    ``redis_url``: default ``memory://``, a bus of this node's own; give two apps the
    same ``memory://name`` (and the same ``store_url``) to test two nodes.
    ``store_url``: default an SQLite file in a temporary directory.  Any other
    keyword is a RevSync setting (``max_staleness=2``...).  An app that already has
    a RevSync keeps it, re-configured with these settings before it starts (a Store
    instance given to ``RevSync(store=...)`` is kept); one that has none gets one.

    RuntimeError if the app's RevSync is already running, or does not get in sync
    within REVSYNC_STARTUP_TIMEOUT.
    """
    with tempfile.TemporaryDirectory(prefix="revsync-testing-") as directory:
        overrides = {
            **settings,
            "redis_url": redis_url or "memory://",
            "store_url": store_url or f"sqlite:///{Path(directory) / 'revsync.db'}",
        }
        ext: RevSync | None = app.extensions.get("revsync")
        if ext is None:
            ext = RevSync(app, **overrides)
        else:
            ext._reconfigure(app, **overrides)
        await ext.start()
        try:
            await _synced(ext)
            yield ext
        finally:
            await ext.stop()


async def _synced(ext: RevSync) -> None:
    """Wait until the node is in sync: start() returns at once without
    REVSYNC_WAIT_FOR_READY, and a test must not begin before."""
    limit = ext.settings.startup_timeout
    try:
        async with asyncio.timeout(limit):
            await ext.subscriber.synced.wait()
    except TimeoutError:
        msg = (
            f"revsync.testing: the node did not get in sync within "
            f"REVSYNC_STARTUP_TIMEOUT={limit:g}s (last error: {ext.subscriber.last_error})"
        )
        raise RuntimeError(msg) from None
