"""Honest answers while the bus Redis is down (a private redis-server, killed).

Fail closed: a token the node knows is revoked stays 401 "Token has been revoked",
any other is 503 + Retry-After (an integer >= 1) saying why, status() not ready.
Fail open: revoked 401, others 200, status() ready and stale.  After Redis comes
back, a token revoked on another node during the outage is never accepted.
Also: a replayed genuine heartbeat does not make a node whose store is unreadable
look synced.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from services.processes import RedisServer
from tests.attacks13._app import REVOKED, bearer, build, decode


def _break_store(db: Path) -> None:
    """Replace the SQLite file by a directory: the store can no longer be opened."""
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db}{suffix}").exists():
            Path(f"{db}{suffix}").rename(f"{db}{suffix}.away")
    db.mkdir()


async def _until(check, within: float = 8.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
async def test_answers_while_the_bus_is_down(
    redis_server: RedisServer, sqlite_url: str, channel: str, fail_mode: str
) -> None:
    common = {
        "store_url": sqlite_url,
        "redis_url": redis_server.url,
        "channel": channel,
        "max_staleness": 1,
        "heartbeat_interval": 0.2,
        "resync_interval": 2.5,
        "fail_mode": fail_mode,
    }
    app_a, a = build(**common)
    app_b, b = build(**common)
    revoked, live, later = [await bearer(app_a, who) for who in ("r", "l", "x")]
    client = app_a.test_client()
    async with app_a.test_app(), app_b.test_app():
        await a.revoke(decode(app_a, revoked))
        redis_server.kill()
        await _until(lambda: a.status()["stale"])
        # Revoked on B while the bus is down: only the store has it.
        await b.revoke(decode(app_a, later))
        response = await client.get("/protected", headers=revoked)
        assert (response.status_code, await response.get_json()) == (401, REVOKED)
        response = await client.get("/protected", headers=live)
        status = a.status()
        if fail_mode == "closed":
            assert response.status_code == 503
            retry = response.headers["Retry-After"]
            assert retry == "3"  # REVSYNC_RESYNC_INTERVAL=2.5 rounded up
            body = await response.get_json()
            assert body["msg"].startswith("Revocation state is unavailable: ")
            assert not status["ready"]
        else:
            assert response.status_code == 200
            assert status["ready"]
            assert status["stale"]
        redis_server.start()
        # From here until and after it is fresh again: the token B revoked during the
        # outage is never accepted by A in fail-closed mode.
        deadline = time.monotonic() + 8
        seen = []
        while time.monotonic() < deadline:
            response = await client.get("/protected", headers=later)
            seen.append(response.status_code)
            if fail_mode == "closed":
                assert response.status_code != 200, seen
            if a.status()["synced"] and response.status_code == 401:
                break
            await asyncio.sleep(0.02)
        assert seen[-1] == 401, seen
        assert (await client.get("/protected", headers=live)).status_code == 200


async def test_a_replayed_heartbeat_does_not_make_a_node_look_synced(
    redis_server: RedisServer, tmp_path: Path, channel: str
) -> None:
    """An attacker on the channel records the node's pings and replays each one at
    once and again later, while the node's store is unreadable: the node must go
    stale (503), as it would without the attacker."""
    db = tmp_path / "h.db"
    redis_url = redis_server.url
    app, ext = build(
        store_url=f"sqlite:///{db}",
        redis_url=redis_url,
        channel=channel,
        max_staleness=1,
        heartbeat_interval=0.2,
        resync_interval=0.3,
    )
    live = await bearer(app)
    client = app.test_client()
    tap = aioredis.Redis.from_url(redis_url)
    pubsub = tap.pubsub()
    # The node's pings travel on its own ping channel: recorded and replayed there.
    ping_channel = ext.subscriber.ping_channel
    await pubsub.subscribe(ping_channel)
    recorded: list[bytes] = []
    # Stopped by an event, not by cancel(): redis-py's get_message can turn a
    # cancellation that lands as its own timeout expires into "no message", and the
    # loop would go on for ever (it hung CI's shutdown that way).
    stop = asyncio.Event()

    async def replay() -> None:
        while not stop.is_set():
            message = await pubsub.get_message(timeout=0.05)
            if message and message["type"] == "message" and message["data"] not in recorded:
                # (the tap hears its own replays too: each genuine ping is kept once)
                recorded.append(message["data"])
                await tap.publish(ping_channel, message["data"])  # replayed at once
            for old in recorded[-3:]:  # and again, while they may still count
                await tap.publish(ping_channel, old)
            await asyncio.sleep(0.02)

    async with app.test_app():
        assert (await client.get("/protected", headers=live)).status_code == 200
        attacker = asyncio.create_task(replay())
        try:
            _break_store(db)
            await ext.store.close()  # the node must reopen it to read
            await asyncio.sleep(2.0)
            assert recorded, "the tap saw no heartbeat"
            response = await client.get("/protected", headers=live)
            assert response.status_code == 503, response.status_code
            assert not ext.status()["ready"]
        finally:
            stop.set()
            await asyncio.wait_for(attacker, timeout=10)
            await pubsub.aclose()
            await tap.aclose()
            db.rmdir()
