"""Forged revoke messages against the refusal on arrival (docs/design.md, "Refused on
arrival"): a forgery of a jti settled first must not end the refusal a genuine
message of the same jti, queued behind it, made; and a flood of distinct forged jtis
leaves nothing refused once the applier has judged them.

Nodes are in-process RevSync instances on the shared Redis and a SQLite file; holding
``replica.lock`` from the test is what a catch-up reading a page does.
"""

from __future__ import annotations

import asyncio
import time

import redis

from revsync.changes import Change, Kind
from revsync.events import RevocationEvent, encode_event
from tests.engine.conftest import NodeFactory, claims, eventually


def _forged_revoke(jti: str, seq: int) -> bytes:
    change = Change(seq, Kind.JTI, jti, True, time.time() + 3600, None, None, time.time())
    return encode_event(RevocationEvent.from_change(change, "mallory", time.time()), None)


def _publish(redis_url: str, channel: str, *messages: bytes) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        with client.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.publish(channel, message)
            pipe.execute()
    finally:
        client.close()


async def test_a_forgery_judged_first_does_not_lift_the_genuine_refusal_behind_it(
    make_node: NodeFactory, sqlite_url: str, redis_url: str, channel: str
) -> None:
    a = await make_node(sqlite_url, resync_interval=600)
    b = await make_node(sqlite_url, resync_interval=600)
    for _ in range(3):
        await a.revoke(claims())
    b.request_catch_up()
    await eventually(lambda: b.replica.store_seq >= 3, within=5)
    # A stale forgery of another jti spends the suspect catch-up of this second, so the
    # next suspect message is judged without a store read.
    _publish(redis_url, channel, _forged_revoke("spent", seq=1))
    await eventually(lambda: b.stats.rejected["stale"] == 1, within=5)
    victim = claims()
    jti = str(victim["jti"])
    queued = b.subscriber._queue._queue  # type: ignore[attr-defined]

    def genuine_queued() -> bool:
        return any(
            isinstance(item, tuple) and item[0].key == jti and item[0].origin != "mallory"
            for item in queued
        )

    async with b.replica.lock:
        # The attacker races the genuine message with a stale forgery of the same jti.
        _publish(redis_url, channel, _forged_revoke(jti, seq=2))
        await eventually(lambda: b.is_revoked(victim), within=5)
        await a.revoke(victim)
        await eventually(genuine_queued, within=5)
        # Let the applier through one lock turn at a time (asyncio.Lock is fair: the
        # test, asking again at once, queues behind it) until it has judged the forgery
        # suspect and settled it; the genuine message then waits for the lock.
        deadline = time.monotonic() + 10
        while b.stats.rejected["stale"] < 2:
            assert time.monotonic() < deadline, "the forgery was never judged"
            await asyncio.sleep(0.01)  # the applier comes to wait for the lock
            b.replica.lock.release()
            await b.replica.lock.acquire()
        if b.revocations.expires_at(jti) is None:  # the genuine message not applied yet
            assert b.is_revoked(victim), "the forgery's settlement lifted the genuine refusal"
    await eventually(lambda: b.revocations.expires_at(jti) is not None, within=5)
    assert b.is_revoked(victim)


async def test_a_flood_of_distinct_forged_jtis_leaves_nothing_refused(
    make_node: NodeFactory, sqlite_url: str, redis_url: str, channel: str
) -> None:
    """Stale forgeries (each refused on arrival, judged suspect) and forgeries ahead of
    the store (applied as restrictions, shed by the next catch-up): once judged and
    caught up, none is refused and no state is left behind for any of them."""
    node = await make_node(sqlite_url, resync_interval=600)
    writer = await make_node(sqlite_url, resync_interval=600)
    real = claims()
    await writer.revoke(real)
    node.request_catch_up()
    await eventually(lambda: node.replica.store_seq >= 1, within=5)
    seq = node.replica.store_seq
    stale = [f"stale-{i}" for i in range(2_000)]
    ahead = [f"ahead-{i}" for i in range(2_000)]
    async with node.replica.lock:
        _publish(redis_url, channel, *(_forged_revoke(j, seq) for j in stale))
        _publish(redis_url, channel, *(_forged_revoke(j, seq + 1 + i) for i, j in enumerate(ahead)))
        await eventually(
            lambda: all(node.revocations.contains_jti(j) for j in stale + ahead), within=30
        )
    await eventually(lambda: node.subscriber._queue.qsize() == 0, within=20)
    node.request_catch_up()  # sheds the restrictions nothing in the store confirms
    await eventually(
        lambda: not any(node.revocations.contains_jti(j) for j in stale + ahead), within=20
    )
    await asyncio.sleep(0.2)
    assert node.revocations.snapshot_jtis().keys() == {real["jti"]}
    assert node.revocations._arriving == {}
    assert node.is_revoked(real)  # the real revocation survived the flood
