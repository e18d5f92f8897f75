"""The in-process bus (memory://) with ping channels: nodes of one process share a
default node id (``hostname-pid``), hence a ping channel, and must stay correct; and
whatever else lands on a node's ping channel (another node's pings, a revocation,
garbage) neither counts as a heartbeat nor reaches the revocation set."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from revsync import RevSync
from revsync._memory_bus import MemoryBus
from revsync.events import RevocationEvent, encode_event
from tests.engine.conftest import claims, eventually, make_app

Start = Callable[..., Awaitable[RevSync]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    nodes: list[RevSync] = []

    async def factory(url: str, **settings: Any) -> RevSync:
        settings.setdefault("store_url", f"sqlite:///{tmp_path / 'revsync.db'}")
        node = RevSync(make_app(), redis_url=url, startup_timeout=10, **settings)
        nodes.append(node)
        await node.start()
        return node

    yield factory
    for node in nodes:
        await node.stop()


async def test_nodes_of_one_process_share_a_default_id_and_stay_correct(start: Start) -> None:
    url = f"memory://{uuid.uuid4().hex[:8]}"
    a = await start(url, heartbeat_interval=0.05, max_staleness=1, resync_interval=0.5)
    b = await start(url, heartbeat_interval=0.05, max_staleness=1, resync_interval=0.5)
    # The default node id is hostname-pid: one process, one id, one ping channel.
    assert a.settings.node_id == b.settings.node_id
    assert a.subscriber.ping_channel == b.subscriber.ping_channel
    before = (a.stats.heartbeats, b.stats.heartbeats)
    await eventually(
        lambda: a.stats.heartbeats >= before[0] + 20 and b.stats.heartbeats >= before[1] + 20,
        within=5,
    )
    # Each counts its own pings only; the other's arrive and are counted as foreign.
    assert a.stats.foreign_pings > 0
    assert b.stats.foreign_pings > 0
    await asyncio.sleep(1.5)  # past max_staleness: both still synced
    assert not a.status()["stale"]
    assert not b.status()["stale"]
    for origin, other in ((a, b), (b, a)):
        token = claims()
        await origin.revoke(token)
        await eventually(lambda: other.is_revoked(token), within=2)  # noqa: B023


async def test_only_the_nodes_own_pings_count_on_its_ping_channel(start: Start) -> None:
    url = f"memory://{uuid.uuid4().hex[:8]}"
    key = b"k" * 32
    node = await start(
        url,
        node_id="n1",
        event_key=key,
        heartbeat_interval=0.2,
        max_staleness=1.5,
        resync_interval=30,
    )
    attacker = MemoryBus(url, node.settings.channel)
    ping_channel = node.subscriber.ping_channel
    token = claims()
    # A real change of the store, announced on the wrong channel.
    other = claims()
    change = await node.revoke(other)
    revoke = RevocationEvent.from_change(
        change._replace(seq=change.seq + 1, key=str(token["jti"])), "attacker", time.time()
    )
    rejected = sum(node.stats.rejected.values())
    foreign = node.stats.foreign_pings
    # A signed revocation, garbage, an unsigned ping and a signed ping with a made-up
    # nonce, all on the node's ping channel.
    await attacker.publish(encode_event(revoke, key), channel=ping_channel)
    await attacker.publish(b"\xff garbage", channel=ping_channel)
    await attacker.publish(
        encode_event(RevocationEvent.ping("n1", "0" * 24, time.time()), None),
        channel=ping_channel,
    )
    await attacker.publish(
        encode_event(RevocationEvent.ping("n1", "1" * 24, time.time()), key),
        channel=ping_channel,
    )
    await eventually(lambda: sum(node.stats.rejected.values()) >= rejected + 3, within=2)
    await eventually(lambda: node.stats.foreign_pings >= foreign + 1, within=2)
    assert node.stats.rejected["not_a_ping"] >= 1
    assert not node.is_revoked(token), "a message on the ping channel reached the set"
    # Made-up pings keep no node in sync once its own stop coming back: silence its
    # publisher (pings published to a hub nobody reads) and flood forged ones.
    node.bus._hub = MemoryBus(f"memory://{uuid.uuid4().hex[:8]}", "x")._hub  # type: ignore[attr-defined]
    stop = asyncio.Event()

    async def forge() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            ping = RevocationEvent.ping("n1", f"{n:024x}", time.time())
            await attacker.publish(encode_event(ping, key), channel=ping_channel)
            await asyncio.sleep(0.01)

    forging = asyncio.create_task(forge())
    try:
        await eventually(lambda: node.status()["stale"], within=5)
        assert node.is_revoked(claims())  # fail closed
    finally:
        stop.set()
        await forging
