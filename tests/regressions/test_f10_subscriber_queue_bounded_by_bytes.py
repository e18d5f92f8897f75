"""Issue 12, finding 10: the subscriber's queue bounds items, not bytes, and checks a
message's size only when it leaves the queue.

While the applier is stalled (a catch-up whose store read is slow: here a delegating
wrapper around the node's real store holds ``since()`` on a gate; the catch-up is
triggered by a genuine event that reveals a seq gap), a publisher floods the channel
with 20,000 messages of 1,900 bytes (well-formed events for an old seq) and 40 of
100 KB.  The reader keeps moving raw messages into the queue: up to 100,000 items of
any size, ~42 MB here, and messages far over the 2 KB event limit are kept until the
applier rejects them.

The queue must stay bounded in bytes (below 8 MiB at any time here) and oversized
messages must be dropped, and counted as ``too_large``, as they arrive, not after
the stall.  Once released, the node must converge: a revocation made during the
flood is refused.

The subscription runs on a private redis-server without pub/sub output-buffer
limits, so Redis never cuts the flood short on its side.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis.asyncio as aredis

from revsync import RevSync
from revsync.changes import ChangeRequest, Kind
from revsync.events import Op, RevocationEvent, encode_event
from revsync.stores import store_from_url
from tests.conftest import RedisServer, free_port
from tests.engine.conftest import NodeFactory, claims

from .conftest import GatedStore, settle

SMALL, SMALL_COUNT = 1_900, 20_000
LARGE, LARGE_COUNT = 100_000, 40
LIMIT = 8 * 1024 * 1024


def _filler(size: int) -> bytes:
    """A well-formed event of exactly ``size`` bytes for an old seq: the node drops it
    as already applied (quietly: 20,000 rejections would each log a warning)."""
    now = float(int(time.time()))

    def encode(key: str) -> bytes:
        event = RevocationEvent(Op.REVOKE, 1, key, now + 3600, "é" * 450, None, "flood", now)
        return encode_event(event, None)

    extra = size - len(encode("k"))
    data = encode("é" * (extra // 2) + "k" * (1 + extra % 2))
    assert len(data) == size
    return data


def _queued_bytes(node: RevSync) -> int:
    """The bytes of messages waiting in the node's subscriber queue."""
    return node.subscriber.queued_bytes


def _taken_in(node: RevSync) -> int:
    """Messages the node's reader has dealt with: queued, rejected or dropped."""
    counters = node.status()["counters"]
    rejected = sum(counters["rejected"].values())
    return node.subscriber.queued + rejected + counters["queue_overflows"]


async def test_flood_while_stalled_stays_bounded_in_bytes_and_node_converges(
    make_node: NodeFactory, sqlite_url: str, tmp_path: Path
) -> None:
    server_dir = tmp_path / "redis"
    server_dir.mkdir()
    server = RedisServer(
        free_port(), server_dir, extra=["--client-output-buffer-limit", "pubsub 0 0 0"]
    )
    server.start()
    nodes: list[RevSync] = []
    try:
        await _flood_while_stalled(make_node, sqlite_url, server, nodes)
    finally:
        for node in nodes:
            await node.stop()
        server.kill()


async def _flood_while_stalled(
    make_node: NodeFactory, sqlite_url: str, server: RedisServer, nodes: list[RevSync]
) -> None:
    writer = await make_node(sqlite_url, redis_url=server.url, resync_interval=600)
    gated = GatedStore.from_url(sqlite_url)
    node = await make_node(
        sqlite_url,
        store=gated,
        redis_url=server.url,
        resync_interval=600,
        heartbeat_interval=5,  # heartbeat timeout 15 s: no reconnect while stalled
        max_staleness=60,
    )
    nodes += [writer, node]
    channel = node.settings.channel

    # A change written without an event, then one with: the event reveals a gap and
    # the node's catch-up is held in its store read.
    silent = store_from_url(sqlite_url)
    await silent.connect()
    hidden = claims()
    await silent.write(ChangeRequest(Kind.JTI, str(hidden["jti"]), True, float(hidden["exp"])))
    await silent.close()
    hold = gated.hold("since", before=True)
    await writer.revoke(claims())
    await hold.reached()

    during = claims()  # a genuine revocation in the middle of the flood
    publisher = aredis.Redis.from_url(server.url)
    peak = 0
    try:
        small, large = _filler(SMALL), b"y" * LARGE
        for batch in range(20):
            async with publisher.pipeline(transaction=False) as pipe:
                for _ in range(SMALL_COUNT // 20):
                    pipe.publish(channel, small)
                for _ in range(LARGE_COUNT // 20):
                    pipe.publish(channel, large)
                await pipe.execute()
            if batch == 10:
                await writer.revoke(during)
            peak = max(peak, _queued_bytes(node))
        # Watch the queue until the reader has taken in all it will (no growth for 1 s).
        last, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and time.monotonic() - stable_since < 1.0:
            size = _taken_in(node)
            peak = max(peak, _queued_bytes(node))
            if size != last:
                last, stable_since = size, time.monotonic()
            await asyncio.sleep(0.05)
        too_large = node.status()["counters"]["rejected"].get("too_large", 0)
        assert not hold.gate.is_set()  # still stalled while measured
    finally:
        hold.release()
        await publisher.aclose()

    converged = await settle(lambda: node.is_revoked(during) and node.is_revoked(hidden), within=15)
    assert peak < LIMIT, f"the stalled node's queue held {peak / 2**20:.1f} MiB"
    assert too_large == LARGE_COUNT, (
        f"{too_large} of {LARGE_COUNT} oversized messages counted as too_large "
        "while the applier was stalled"
    )
    assert converged, "after the stall the node never caught up with the revocations"
