"""``python -m services.resync`` against each store, and its answers to bad settings."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from revsync.changes import ChangeRequest, Kind
from revsync.stores import store_from_url
from services.processes import ROOT, free_port, run
from tests.services.conftest import STORES


def run_job(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("REVSYNC_")}
    full.update(env)
    return run([sys.executable, "-m", "services.resync", *args], env=full)


async def _seed(url: str) -> None:
    store = store_from_url(url)
    await store.connect()
    try:
        now = time.time()
        await store.write(ChangeRequest(Kind.JTI, "expired-1", True, now - 100))
        await store.write(ChangeRequest(Kind.JTI, "expired-2", True, now - 50))
        await store.write(ChangeRequest(Kind.JTI, "live", True, now + 3600))
    finally:
        await store.close()


@pytest.mark.parametrize("kind", STORES)
def test_job_prunes_and_checks(
    kind: str, store_url_for: Callable[[str], str], redis_url: str
) -> None:
    url = store_url_for(kind)
    asyncio.run(_seed(url))
    proc = run_job(REVSYNC_STORE_URL=url, REVSYNC_REDIS_URL=redis_url)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "redis      reachable" in out
    assert "schema in place" in out
    assert "prune      removed 2 expired entries" in out
    assert "check      ok: 1 live rows, head 3" in out
    assert "resync: done" in out
    assert "\x1b[" not in out  # plain lines when not on a terminal


@pytest.mark.parametrize("kind", STORES)
def test_job_starts_a_new_epoch_after_a_restore(
    kind: str, store_url_for: Callable[[str], str], redis_url: str
) -> None:
    """``--new-epoch``: what an operator runs after restoring the store from a backup."""
    url = store_url_for(kind)
    asyncio.run(_seed(url))
    plain = run_job(REVSYNC_STORE_URL=url, REVSYNC_REDIS_URL=redis_url)
    assert plain.returncode == 0, plain.stderr
    assert "epoch 1" in plain.stdout
    proc = run_job("--new-epoch", REVSYNC_STORE_URL=url, REVSYNC_REDIS_URL=redis_url)
    assert proc.returncode == 0, proc.stderr
    assert "epoch 2 (new: every node re-reads the store)" in proc.stdout
    assert "(epoch 2)" in proc.stdout

    async def epoch() -> int:
        store = store_from_url(url)
        await store.connect()
        try:
            return (await store.position()).epoch
        finally:
            await store.close()

    assert asyncio.run(epoch()) == 2


def test_job_creates_schema_on_empty_store(sqlite_url: str, redis_url: str) -> None:
    proc = run_job(REVSYNC_STORE_URL=sqlite_url, REVSYNC_REDIS_URL=redis_url)
    assert proc.returncode == 0, proc.stderr
    assert "check      ok: 0 live rows, head 0" in proc.stdout


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        ({"REVSYNC_STORE_URL": "ftp://nowhere/x"}, 2, "REVSYNC_STORE_URL"),
        ({"REVSYNC_STORE_URL": "not a url"}, 2, "REVSYNC_STORE_URL"),
        ({"REVSYNC_REDIS_URL": "http://127.0.0.1/0"}, 2, "REVSYNC_REDIS_URL"),
        ({"REVSYNC_MAX_STALENESS": "-1"}, 2, "REVSYNC_MAX_STALENESS"),
        ({"REVSYNC_REDIS_URL": "redis://127.0.0.1:{port}/0"}, 3, "cannot reach Redis"),
        (
            {"REVSYNC_STORE_URL": "postgresql://postgres@127.0.0.1:{port}/test"},
            3,
            "cannot reach the store",
        ),
        (
            {"REVSYNC_STORE_URL": "sqlite:////nonexistent-dir/x/revsync.db"},
            3,
            "cannot reach the store",
        ),
    ],
)
def test_job_bad_settings_one_line_no_traceback(
    env: dict[str, str], code: int, message: str, sqlite_url: str, redis_url: str
) -> None:
    full = {"REVSYNC_STORE_URL": sqlite_url, "REVSYNC_REDIS_URL": redis_url}
    full.update({k: v.format(port=free_port()) for k, v in env.items()})
    proc = run_job("--wait", "0.3", **full)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("resync: ")


def test_job_progress_on_a_terminal(sqlite_url: str, redis_url: str) -> None:
    """Under a pseudo-terminal the job still prints every step (and exits 0)."""
    import pty

    env = {k: v for k, v in os.environ.items() if not k.startswith("REVSYNC_")}
    env.update(REVSYNC_STORE_URL=sqlite_url, REVSYNC_REDIS_URL=redis_url)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.resync"],
        cwd=ROOT,
        env=env,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(30) == 0
    out = b"".join(chunks).decode(errors="replace")
    assert "check" in out
    assert "resync: done" in out
