"""The guarantees of docs/design.md, each against real Redis and every real store."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid

import pytest
import redis

from revsync import RevSync, StoreError
from revsync.changes import ChangeRequest, Kind
from revsync.events import RevocationEvent, encode_event
from revsync.stores import store_from_url
from tests.conftest import RedisServer
from tests.engine.conftest import NodeFactory, claims, eventually


async def test_revoke_is_durable_and_refused_locally_at_once(
    make_node: NodeFactory, store_url: str
) -> None:
    """Guarantees 1 and 2: a returned revoke is in the store and refused here."""
    node = await make_node(store_url)
    token = claims()
    assert not node.is_revoked(token)
    change = await node.revoke(token)
    # No await between the return and the check: no bus round trip can help.
    assert node.is_revoked(token)
    reader = store_from_url(store_url)
    await reader.connect()
    try:
        row = await reader.get(Kind.JTI, token["jti"])
    finally:
        await reader.close()
    assert row is not None
    assert row.revoked
    assert row.seq == change.seq
    assert row.identity == "alice"


async def test_ready_node_accepts_tokens_before_its_first_heartbeat(
    make_node: NodeFactory, sqlite_url: str
) -> None:
    """start() returned: the snapshot is applied, so an unrevoked token passes at once."""
    node = await make_node(sqlite_url, heartbeat_interval=10, max_staleness=60)
    assert node.ready
    assert not node.is_revoked(claims())


async def test_every_other_node_refuses_within_milliseconds(
    make_node: NodeFactory, store_url: str
) -> None:
    """Guarantee 3, healthy Redis: propagation over the bus, no resync needed."""
    a = await make_node(store_url, resync_interval=600)
    b = await make_node(store_url, resync_interval=600)
    c = await make_node(store_url, resync_interval=600)
    token = claims()
    await a.revoke(token)
    took = await eventually(lambda: b.is_revoked(token) and c.is_revoked(token), within=2)
    assert b.stats.resyncs == 1  # the start-up snapshot only: the bus did it
    assert took < 2


async def test_lost_message_is_repaired_by_the_resync_timer(
    make_node: NodeFactory, sqlite_url: str
) -> None:
    """Guarantee 3, message lost: the writer publishes where nobody listens."""
    a = await make_node(sqlite_url, channel=f"elsewhere-{uuid.uuid4().hex}")
    b = await make_node(sqlite_url, resync_interval=0.3)
    token = claims()
    await a.revoke(token)
    await eventually(lambda: b.is_revoked(token), within=5)
    assert b.stats.applied == 0  # nothing came over the bus


async def test_store_down_during_revoke_raises_and_publishes_nothing(
    make_node: NodeFactory, redis_server: RedisServer
) -> None:
    """Guarantee 1 and the store-failure row of docs/design.md's table of failures."""
    store_url = f"{redis_server.url}?prefix=down"
    a = await make_node(store_url)
    b = await make_node(store_url)
    redis_server.kill()
    token = claims()
    with pytest.raises(StoreError):
        await a.revoke(token)
    assert a.stats.published == 0
    assert not a.is_revoked(token)
    await asyncio.sleep(0.3)
    assert b.stats.applied == 0
    assert not b.is_revoked(token)
    # The store is back: revoking works again without restarting anything.
    redis_server.start()
    await a.revoke(token)
    assert a.is_revoked(token)
    await eventually(lambda: b.is_revoked(token), within=5)


async def test_not_ready_and_refusing_until_the_snapshot_is_applied(
    make_node: NodeFactory, store_url: str
) -> None:
    """Guarantee 4: backfill before ready; every stored revocation is present."""
    writer = store_from_url(store_url)
    await writer.connect()
    tokens = [claims() for _ in range(2000)]
    await writer.write_many(
        [ChangeRequest(Kind.JTI, t["jti"], True, float(t["exp"]), "alice") for t in tokens]
    )
    await writer.close()
    node = await make_node(store_url, start=False, wait_for_ready=False)
    fresh = claims(identity="bob")
    assert node.is_revoked(fresh)  # not started: refuse everything
    assert node.status()["ready"] is False
    await node.start()
    await eventually(lambda: node.ready, within=10)
    assert node.status()["ready"] is True
    assert all(node.is_revoked(t) for t in tokens)
    assert not node.is_revoked(fresh)
    assert node.status()["entries"]["jti"] == len(tokens)


async def test_startup_timeout_fails_start_up_loudly(make_node: NodeFactory) -> None:
    from tests.conftest import free_port

    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    with pytest.raises(RuntimeError, match="REVSYNC_STARTUP_TIMEOUT"):
        await make_node(dead, startup_timeout=1)


async def test_revocations_streaming_during_start_up_are_not_missed(
    make_node: NodeFactory, store_url: str
) -> None:
    """Guarantee 4: list-then-watch leaves no hole between snapshot and subscription."""
    writer = await make_node(store_url)
    revoked: list[dict[str, object]] = []

    async def stream() -> None:
        for _ in range(150):
            token = claims()
            await writer.revoke(token)
            revoked.append(token)
            await asyncio.sleep(0)

    streaming = asyncio.create_task(stream())
    await asyncio.sleep(0.01)
    late = await make_node(store_url, resync_interval=600)
    await streaming
    await eventually(lambda: all(late.is_revoked(t) for t in revoked), within=2)


@pytest.mark.parametrize("fail_mode", ["closed", "open"])
async def test_hung_redis_makes_the_node_stale_and_applies_the_policy(
    make_node: NodeFactory, redis_server: RedisServer, sqlite_url: str, fail_mode: str
) -> None:
    """Guarantee 5: SIGSTOPped Redis; the heartbeat stops; the policy applies."""
    node = await make_node(
        sqlite_url,
        redis_url=redis_server.url,
        heartbeat_interval=0.1,
        max_staleness=0.6,
        fail_mode=fail_mode,
    )
    token = claims()
    assert not node.is_revoked(token)
    assert redis_server.proc is not None
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        await eventually(lambda: node.status()["stale"], within=3)
        status = node.status()
        assert status["synced"] is False
        # /readyz: a fail-open node keeps serving while stale (docs/design.md, Readiness).
        assert status["ready"] is (fail_mode == "open")
        assert "no confirmed sync" in status["reason"]
        assert node.is_revoked(token) is (fail_mode == "closed")
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    await eventually(lambda: not node.status()["stale"], within=10)
    assert not node.is_revoked(token)


async def test_revoke_and_unrevoke_apply_in_store_order_everywhere(
    make_node: NodeFactory, store_url: str
) -> None:
    """Guarantee 6: interleaved revoke/unrevoke from two nodes; the last one wins."""
    a = await make_node(store_url, resync_interval=600)
    b = await make_node(store_url, resync_interval=600)
    c = await make_node(store_url, resync_interval=600)
    tokens = [claims() for _ in range(5)]

    async def churn(node: RevSync, rounds: int) -> None:
        for i in range(rounds):
            for token in tokens:
                if (i + hash(node.settings.node_id)) % 2:
                    await node.revoke(token)
                else:
                    await node.unrevoke(str(token["jti"]))

    await asyncio.gather(churn(a, 12), churn(b, 11))
    reader = store_from_url(store_url)
    await reader.connect()
    truth = {}
    for token in tokens:
        row = await reader.get(Kind.JTI, str(token["jti"]))
        truth[token["jti"]] = bool(row and row.revoked)
    await reader.close()

    def agree() -> bool:
        return all(n.is_revoked(t) == truth[t["jti"]] for n in (a, b, c) for t in tokens)

    await eventually(agree, within=3)


async def test_garbage_on_the_channel_is_counted_and_dropped(
    make_node: NodeFactory, sqlite_url: str, redis_url: str, channel: str
) -> None:
    """Guarantee 7: bad input never kills the subscriber."""
    node = await make_node(sqlite_url)
    client = redis.Redis.from_url(redis_url)
    garbage = [
        b"\xff\xfe not json",
        b"[1, 2, 3]",
        json.dumps({"v": 99, "op": "revoke"}).encode(),
        b"{" + b" " * 10_000 + b"}",
        json.dumps({"v": 1, "op": "revoke", "seq": "one"}).encode(),
    ]
    for message in garbage:
        client.publish(channel, message)
    client.close()
    await eventually(lambda: sum(node.stats.rejected.values()) == len(garbage), within=3)
    assert set(node.stats.rejected) >= {"not_json", "bad_schema", "too_large"}
    # Still alive and applying.
    other = await make_node(sqlite_url)
    token = claims()
    await other.revoke(token)
    await eventually(lambda: node.is_revoked(token), within=2)


async def test_forged_unrevoke_is_only_a_doorbell(
    make_node: NodeFactory, store_url: str, redis_url: str, channel: str
) -> None:
    """Guarantee 7: an unrevoke on the bus makes nodes re-read the store, not obey."""
    a = await make_node(store_url)
    b = await make_node(store_url, resync_interval=600)
    token = claims()
    change = await a.revoke(token)
    await eventually(lambda: b.is_revoked(token), within=2)
    forged = RevocationEvent.from_change(
        change._replace(seq=change.seq + 1, revoked=False), "mallory", time.time()
    )
    assert forged.op == "unrevoke"
    client = redis.Redis.from_url(redis_url)
    client.publish(channel, encode_event(forged, None))
    client.close()
    # The store has no change numbered seq + 1: the doorbell is counted and ignored.
    await eventually(lambda: b.stats.rejected["unconfirmed_doorbell"] == 1, within=2)
    assert b.is_revoked(token)
    assert a.is_revoked(token)


async def test_with_a_key_unsigned_and_wrongly_signed_events_are_dropped(
    make_node: NodeFactory, sqlite_url: str, redis_url: str, channel: str
) -> None:
    node = await make_node(sqlite_url, event_key="k" * 32)
    victim = claims()
    client = redis.Redis.from_url(redis_url)
    for seq, key in ((1, None), (2, b"wrong-key" * 4)):
        event = RevocationEvent.from_change(
            _change(seq, str(victim["jti"])), "mallory", time.time()
        )
        client.publish(channel, encode_event(event, key))
    client.close()
    await eventually(
        lambda: node.stats.rejected["unsigned"] == 1 and node.stats.rejected["bad_signature"] == 1,
        within=3,
    )
    assert not node.is_revoked(victim)
    # Correctly signed traffic from a real peer still flows.
    peer = await make_node(sqlite_url, event_key="k" * 32)
    token = claims()
    await peer.revoke(token)
    await eventually(lambda: node.is_revoked(token), within=2)


def _change(seq: int, jti: str):  # type: ignore[no-untyped-def]
    from revsync.changes import Change

    now = time.time()
    return Change(seq, Kind.JTI, jti, True, now + 3600, None, None, now)


async def test_entries_are_dropped_only_after_their_token_expires(
    make_node: NodeFactory, store_url: str
) -> None:
    """Guarantee 8: memory bounded by live revoked tokens."""
    node = await make_node(store_url)
    short = claims(exp=time.time() + 1)
    long = claims()
    await node.revoke(short)
    await node.revoke(long)
    assert node.revocations.jti_count == 2
    pruned = node.revocations.sweep(time.time())
    assert pruned == 0
    await asyncio.sleep(1.2)
    assert node.revocations.sweep(time.time() + 1) == 1
    assert node.is_revoked(long)
    assert node.revocations.jti_count == 1
    assert await node.store.prune(time.time() + 1) == 1
    assert await node.store.get(Kind.JTI, str(long["jti"])) is not None


async def test_redis_restart_is_caught_up_from_the_store(
    make_node: NodeFactory, redis_server: RedisServer, sqlite_url: str
) -> None:
    """A revocation made while Redis was down reaches the other node after it returns."""
    a = await make_node(sqlite_url, redis_url=redis_server.url, resync_interval=600)
    b = await make_node(sqlite_url, redis_url=redis_server.url, resync_interval=600)
    redis_server.kill()
    token = claims()
    await a.revoke(token)  # durable; the publish fails and is logged
    assert a.stats.publish_failures == 1
    assert not b.is_revoked(token)
    redis_server.start()
    await eventually(lambda: b.is_revoked(token), within=5)
    assert b.stats.reconnects >= 1


async def test_revoke_identity_refuses_every_earlier_token(
    make_node: NodeFactory, store_url: str
) -> None:
    a = await make_node(store_url)
    b = await make_node(store_url)
    old = claims(identity="carol", iat=time.time() - 60)
    other = claims(identity="dave")
    await a.revoke_identity("carol")
    assert a.is_revoked(old)
    await eventually(lambda: b.is_revoked(old), within=2)
    assert not b.is_revoked(other), b.status()
    later = claims(identity="carol", iat=time.time() + 5)
    assert not b.is_revoked(later)
    await a.unrevoke_identity("carol")
    await eventually(lambda: not b.is_revoked(old), within=2)


async def test_revoke_many_reaches_every_node(make_node: NodeFactory, store_url: str) -> None:
    a = await make_node(store_url)
    b = await make_node(store_url, resync_interval=600)
    tokens = [claims() for _ in range(1500)]
    changes = await a.revoke_many(tokens)
    assert [c.seq for c in changes] == list(range(changes[0].seq, changes[0].seq + 1500))
    assert all(a.is_revoked(t) for t in tokens)
    await eventually(lambda: all(b.is_revoked(t) for t in tokens), within=5)


async def test_revoke_rejects_tokens_without_jti_or_exp(
    make_node: NodeFactory, sqlite_url: str
) -> None:
    node = await make_node(sqlite_url)
    with pytest.raises(ValueError, match="jti"):
        await node.revoke({"exp": time.time() + 60})
    with pytest.raises(ValueError, match="exp"):
        await node.revoke({"jti": "abc"})
    with pytest.raises(ValueError, match="jti"):
        await node.revoke_jti("", time.time())
    with pytest.raises(ValueError, match="expires_at"):
        await node.revoke_jti("abc", float("nan"))


async def test_nodes_prune_expired_rows_from_the_store(
    make_node: NodeFactory, store_url: str
) -> None:
    """Guarantee 8 for the store: rows of expired tokens go; live ones stay."""
    writer = store_from_url(store_url)
    await writer.connect()
    now = time.time()
    expired = await writer.write(ChangeRequest(Kind.JTI, "gone", True, now - 60))
    live = await writer.write(ChangeRequest(Kind.JTI, "kept", True, now + 3600))
    node = await make_node(store_url, prune_interval=0.2)

    async def rows() -> tuple[object, object]:
        return await writer.get(Kind.JTI, "gone"), await writer.get(Kind.JTI, "kept")

    deadline = time.monotonic() + 5
    while (await rows())[0] is not None:
        assert time.monotonic() < deadline, "the expired row was never pruned"
        await asyncio.sleep(0.05)
    assert (await rows())[1] == live
    assert node.stats.store_pruned >= 1
    assert expired.seq < live.seq
    await writer.close()
