"""A RevSync stopped and started again (the same app served twice: a module-scoped app
with ``async with app.test_app()`` per test, or an ASGI server's lifespan run twice)
must go through its start-up sync again before it accepts a token.

The subscriber's ``synced``/``ready`` events and the replica survive ``stop()``, so
on the second ``start()`` the node becomes ready at the first heartbeat back, with
the set it had when it stopped: a token another node revoked meanwhile is accepted
(200) until a catch-up happens to succeed.  Here the store cannot be opened (its
file replaced by a directory: a real failure), so that catch-up never succeeds and
the node keeps accepting the revoked token for up to REVSYNC_MAX_STALENESS.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.attacks13._app import bearer, build, decode


def _break_store(db: Path) -> None:
    """Replace the SQLite file by a directory: the store can no longer be opened."""
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db}{suffix}").exists():
            Path(f"{db}{suffix}").rename(f"{db}{suffix}.away")
    db.mkdir()


async def test_a_restarted_node_does_not_accept_what_was_revoked_while_stopped(
    tmp_path: Path,
) -> None:
    db = tmp_path / "r.db"
    store_url = f"sqlite:///{db}"
    # Not waiting for readiness at start-up, so the restarted node serves (and must
    # refuse) while it cannot read the store; with the default wait it fails to start.
    common = {
        "store_url": store_url,
        "redis_url": "memory://restart13",
        "resync_interval": 30,
        "wait_for_ready": False,
    }
    app_a, a = build(**common)
    app_b, b = build(**common)
    token = await bearer(app_a)
    client = app_a.test_client()
    async with app_b.test_app():
        async with app_a.test_app():
            for _ in range(100):
                if a.ready:
                    break
                await asyncio.sleep(0.05)
            assert (await client.get("/protected", headers=token)).status_code == 200
        # A is stopped; B revokes the token (store + bus; A does not hear it).
        await b.revoke(decode(app_a, token))
        _break_store(db)  # the store cannot be opened now
        try:
            async with app_a.test_app():
                statuses = []
                for _ in range(15):
                    response = await client.get("/protected", headers=token)
                    statuses.append(response.status_code)
                    await asyncio.sleep(0.1)
                # Not yet re-read from the store since the restart: never accepted.
                assert 200 not in statuses, statuses
                assert not a.status()["ready"]
        finally:
            db.rmdir()
