"""``revsync check|migrate|prune|status`` (``python -m revsync``) and ``quart revsync ...``
from an app's RevSync."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from quart import Quart

from revsync import RevSync
from revsync.changes import ChangeRequest, Kind
from revsync.stores import store_from_url
from services.processes import run


def _revsync(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("REVSYNC_")}
    full.update(env)
    return run([sys.executable, "-m", "revsync", *args], env=full)


async def _seed(url: str) -> None:
    store = store_from_url(url)
    await store.connect()
    try:
        now = time.time()
        await store.write(ChangeRequest(Kind.JTI, "expired", True, now - 100))
        await store.write(ChangeRequest(Kind.JTI, "live", True, now + 3600))
    finally:
        await store.close()


def test_each_command_from_the_environment(sqlite_url: str, redis_url: str) -> None:
    env = {"REVSYNC_STORE_URL": sqlite_url, "REVSYNC_REDIS_URL": redis_url}
    migrate = _revsync("migrate", **env)
    assert migrate.returncode == 0, migrate.stderr
    assert "revsync: done: schema in place" in migrate.stdout
    assert "redis" not in migrate.stdout  # DDL only: no Redis needed
    asyncio.run(_seed(sqlite_url))
    status = _revsync("status", **env)
    assert status.returncode == 0, status.stderr
    assert "at seq 2, epoch 1, 2 live rows" in status.stdout
    prune = _revsync("prune", **env)
    assert prune.returncode == 0, prune.stderr
    assert "revsync: done: 1 expired entries pruned" in prune.stdout
    check = _revsync("check", "--wait", "1", **env)
    assert check.returncode == 0, check.stderr
    assert "revsync: done: store" in check.stdout
    assert "1 live rows, 0 pruned" in check.stdout


def test_bad_setting_exit_2_naming_the_key(sqlite_url: str) -> None:
    proc = _revsync("status", REVSYNC_STORE_URL=sqlite_url, REVSYNC_LEEWAY="soon")
    assert proc.returncode == 2
    assert proc.stderr.startswith("revsync: ")
    assert "REVSYNC_LEEWAY" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_quart_cli_uses_the_apps_revsync(sqlite_url: str, redis_url: str) -> None:
    app = Quart(__name__)
    app.config.update(JWT_SECRET_KEY="x" * 32, JWT_BLACKLIST_ENABLED=True)
    # Settings given as keywords, not in the environment: the commands use them.
    RevSync(app, store_url=sqlite_url, redis_url=redis_url)
    asyncio.run(_seed(sqlite_url))
    runner = app.test_cli_runner()
    status = runner.invoke(args=["revsync", "status"])
    assert status.exit_code == 0, status.output
    assert f"store {sqlite_url}" in status.output
    assert "2 live rows" in status.output
    check = runner.invoke(args=["revsync", "check", "--wait", "1"])
    assert check.exit_code == 0, check.output
    assert "1 pruned" in check.output
    assert runner.invoke(args=["revsync", "migrate"]).exit_code == 0
    assert runner.invoke(args=["revsync", "prune"]).exit_code == 0


def test_quart_cli_exit_code_when_unreachable(sqlite_url: str) -> None:
    app = Quart(__name__)
    app.config.update(JWT_SECRET_KEY="x" * 32, JWT_BLACKLIST_ENABLED=True)
    RevSync(app, store_url=sqlite_url, redis_url="redis://127.0.0.1:1/0")
    result = app.test_cli_runner().invoke(args=["revsync", "status", "--wait", "0"])
    assert result.exit_code == 3
