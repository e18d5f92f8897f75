"""The in-process bus (``memory://``) and ``revsync.testing.running``.

- a subscriber cut off at 32 MiB unread loses nothing: it catches up from the store
  well before the resync timer;
- another process on the same SQLite store (a second hypercorn worker) learns of the
  first one's revocations at its next catch-up, all of them;
- hubs of different names do not talk;
- ``running(app)`` leaves no task and no file behind, can be used again on the same
  app (fresh state), and refuses to nest.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

import revsync.testing
from revsync._memory_bus import SUBSCRIPTION_LIMIT, MemoryBus
from services.processes import ROOT, run
from tests.attacks13._app import build


async def _until(check, within: float = 5.0) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, "condition not reached"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def _revsync_tasks() -> list[str]:
    return [
        t.get_name()
        for t in asyncio.all_tasks()
        if t.get_name().startswith("revsync") and not t.done()
    ]


async def test_a_cut_off_subscriber_loses_no_revocation(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'cut.db'}"
    app_a, _ = build()
    app_b, _ = build()
    async with (
        revsync.testing.running(app_a, redis_url="memory://cut13", store_url=store) as a,
        revsync.testing.running(
            app_b, redis_url="memory://cut13", store_url=store, resync_interval=60
        ) as b,
    ):
        flood = MemoryBus("memory://cut13", b.settings.channel)
        junk = b"x" * (1024 * 1024)
        # No await point yields in between: B's reader cannot drain; it is cut off.
        for _ in range(SUBSCRIPTION_LIMIT // len(junk) + 2):
            await flood.publish(junk)
        jtis = [f"cut-{i}" for i in range(50)]
        for jti in jtis:
            await a.revoke_jti(jti, expires_at=time.time() + 600)
        waited = await _until(
            lambda: all(b.is_revoked({"jti": j, "iat": time.time()}) for j in jtis), 5.0
        )
        assert b.stats.reconnects >= 1
        assert waited < 5.0


async def test_another_process_on_the_same_store_catches_up(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'two.db'}"
    app, _ = build()
    async with revsync.testing.running(app, store_url=store, resync_interval=1) as ext:
        jtis = [f"other-{i}" for i in range(200)]
        script = str(Path(__file__).with_name("_child_revoke.py"))
        done = await asyncio.to_thread(
            run, [sys.executable, script, store, *jtis], cwd=ROOT, timeout=60
        )
        assert done.returncode == 0, done.stderr[-2000:]
        await _until(lambda: all(ext.is_revoked({"jti": j, "iat": time.time()}) for j in jtis))


async def test_hubs_of_different_names_do_not_talk(tmp_path: Path) -> None:
    app_a, _ = build()
    app_b, _ = build()
    async with (
        revsync.testing.running(app_a, redis_url="memory://n1-13") as a,
        revsync.testing.running(app_b, redis_url="memory://n2-13") as b,
    ):
        assert a.settings.channel == b.settings.channel
        before = b.stats.applied
        await a.revoke_jti("only-a", expires_at=time.time() + 600)
        await asyncio.sleep(0.3)
        assert not b.is_revoked({"jti": "only-a", "iat": time.time()})
        assert b.revocations.jti_count == 0
        assert b.stats.applied == before


async def test_running_twice_and_nested(tmp_path: Path) -> None:
    app, ext0 = build()
    directories = []
    for _ in range(2):
        async with revsync.testing.running(app) as ext:
            assert ext is ext0
            directories.append(Path(ext.store.url.removeprefix("sqlite:///")).parent)
            assert not ext.is_revoked({"jti": "j", "iat": time.time()})  # fresh each time
            await ext.revoke_jti("j", expires_at=time.time() + 600)
            assert ext.is_revoked({"jti": "j", "iat": time.time()})
            with pytest.raises(RuntimeError):
                async with revsync.testing.running(app):
                    pass
            assert ext.ready  # the outer one still runs
        assert _revsync_tasks() == []
    for directory in directories:
        assert not directory.exists()
