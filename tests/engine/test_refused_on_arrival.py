"""A revoke message's jti is refused the moment the reader validates it, whatever the
applier is doing (docs/design.md, "Refused on arrival"), and the applier settles that
refusal by the state model's rules.

The nodes are in-process RevSync instances on the shared Redis and a SQLite file.
Holding ``replica.lock`` from the test is what a catch-up reading a page of the store
does: the applier cannot apply anything meanwhile, so only the reader can be the one
refusing.
"""

from __future__ import annotations

import asyncio
import time

import redis

from revsync.changes import Change, Kind
from revsync.events import RevocationEvent, encode_event
from tests.engine.conftest import NodeFactory, claims, eventually


def _publish(
    redis_url: str, channel: str, event: RevocationEvent, key: bytes | None = None
) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.publish(channel, encode_event(event, key))
    finally:
        client.close()


def _revoke_event(jti: str, seq: int) -> RevocationEvent:
    change = Change(seq, Kind.JTI, jti, True, time.time() + 3600, None, None, time.time())
    return RevocationEvent.from_change(change, "mallory", time.time())


async def test_a_revocation_is_refused_while_the_applier_is_held_up(
    make_node: NodeFactory, sqlite_url: str
) -> None:
    a = await make_node(sqlite_url, resync_interval=600)
    b = await make_node(sqlite_url, resync_interval=600)
    lags: list[float] = []
    b.stats.lag_observers.append(lags.append)
    token = claims()
    jti = str(token["jti"])
    async with b.replica.lock:
        await a.revoke(token)
        returned = time.time()  # after the message was sent
        await eventually(lambda: b.is_revoked(token), within=5)
        # Refused by the reader alone: the set holds no entry for it yet.
        assert b.revocations.expires_at(jti) is None
        assert b.stats.applied == 0
        await asyncio.sleep(0.5)
        released = time.time()
    await eventually(lambda: b.revocations.expires_at(jti) is not None, within=5)
    assert b.is_revoked(token)
    assert b.stats.applied == 1
    # Its lag runs to the moment it was refused, not to the applier's turn.
    await eventually(lambda: len(lags) == 1, within=5)
    assert returned + lags[0] < released


async def test_a_stale_forgery_refused_on_arrival_is_let_go_once_judged(
    make_node: NodeFactory, sqlite_url: str, redis_url: str, channel: str
) -> None:
    """A revoke message numbered at or below what the node has read, for a token the
    store never revoked: the reader refuses it at once (it cannot tell), the applier
    finds it suspect, and the refusal ends without waiting for a catch-up."""
    a = await make_node(sqlite_url, resync_interval=600)
    b = await make_node(sqlite_url, resync_interval=600)
    for _ in range(3):
        await a.revoke(claims())
    b.request_catch_up()
    await eventually(lambda: b.replica.store_seq >= 3, within=5)
    victim = claims()
    jti = str(victim["jti"])
    async with b.replica.lock:
        _publish(redis_url, channel, _revoke_event(jti, seq=1))
        await eventually(lambda: b.is_revoked(victim), within=5)
        assert b.revocations.expires_at(jti) is None
    # Judged: a restriction below the node's cursor that adds something is suspect.
    await eventually(lambda: not b.is_revoked(victim), within=5)
    assert b.stats.rejected["stale"] == 1
    assert not b.revocations.contains_jti(jti)


async def test_an_unsigned_revoke_is_never_refused_when_a_key_is_set(
    make_node: NodeFactory, sqlite_url: str, redis_url: str, channel: str
) -> None:
    node = await make_node(sqlite_url, event_key="k" * 32)
    victim = claims()
    async with node.replica.lock:
        _publish(redis_url, channel, _revoke_event(str(victim["jti"]), seq=99))
        await eventually(lambda: node.stats.rejected["unsigned"] == 1, within=5)
        assert not node.is_revoked(victim)
    signed = claims()
    async with node.replica.lock:
        _publish(redis_url, channel, _revoke_event(str(signed["jti"]), seq=99), b"k" * 32)
        await eventually(lambda: node.is_revoked(signed), within=5)


async def test_stopping_ends_refusals_whose_messages_were_never_applied(
    make_node: NodeFactory, sqlite_url: str, redis_url: str, channel: str
) -> None:
    """A node stopped with refused-on-arrival messages still queued leaves nothing
    behind: started again, it serves what the store says."""
    node = await make_node(sqlite_url, resync_interval=600)
    forged = [claims() for _ in range(3)]
    async with node.replica.lock:
        for i, token in enumerate(forged):
            _publish(redis_url, channel, _revoke_event(str(token["jti"]), seq=1000 + i))
        await eventually(lambda: all(node.is_revoked(t) for t in forged), within=5)
        stopping = asyncio.create_task(node.stop())
        await asyncio.sleep(0.2)  # the applier waits for this lock: stop cancels it
    await stopping
    assert not any(node.revocations.contains_jti(str(t["jti"])) for t in forged)
    await node.start()
    assert not any(node.is_revoked(t) for t in forged)
