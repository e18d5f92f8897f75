"""Issue 5, items 2 and 4: a subscriber that was away, and a link that hangs.

The nodes are in-process RevSync instances on real connections to a redis-server of
the test's own; the faults are ``CLIENT KILL TYPE pubsub``, kill -9-free proxy cuts,
SIGSTOP/SIGCONT of Redis and a stalled proxy.  The resync timer is pushed out of
reach (600 s) wherever it could hide the mechanism under test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest

from revsync import RevSync
from tests.conftest import RedisServer
from tests.engine.conftest import NodeFactory, claims, eventually

from .conftest import TcpProxy, ms

GAP_TOKENS = 25


async def _wait_reconnect(node: RevSync, before: int, within: float) -> float:
    """Wait for ``node`` to report a reconnect after ``before``; return monotonic time."""
    await eventually(lambda: node.stats.reconnects > before, within=within)
    return time.monotonic()


@pytest.mark.parametrize("fault", ["client-kill-pubsub", "proxy-cut"])
async def test_messages_missed_while_away_are_recovered_within_a_second_of_reconnecting(
    make_node: NodeFactory,
    redis_server: RedisServer,
    proxy_factory: Any,
    sqlite_url: str,
    fault: str,
    figures: dict[str, Any],
) -> None:
    """Item 2: what was published while B was unsubscribed reaches B after it is back.

    Nothing on the bus says B missed anything (redis-py resubscribes; the gap's messages
    are simply gone) and the timer is at 600 s: only the catch-up B runs on every
    (re)connect can recover them.
    """
    proxy: TcpProxy = await proxy_factory(redis_server.port)
    a = await make_node(sqlite_url, redis_url=redis_server.url, resync_interval=600)
    b = await make_node(
        sqlite_url,
        redis_url=proxy.url(),
        resync_interval=600,
        heartbeat_interval=0.2,
        # Long enough that going stale (and refusing everything) cannot pass for the
        # recovery this test is about, even on a loaded machine.
        max_staleness=60,
    )
    warm = claims()
    await a.revoke(warm)
    await eventually(lambda: b.is_revoked(warm), within=2)
    before = b.stats.reconnects
    tokens = [claims() for _ in range(GAP_TOKENS)]

    if fault == "client-kill-pubsub":
        client = redis_server.client()
        killed = client.client_kill_filter(_type="pubsub")
        client.close()
        assert killed >= 2  # A's and B's subscriptions
        # B backs off >= 50 ms before resubscribing; these are published meanwhile.
        for token in tokens:
            await a.revoke(token)
    else:
        proxy.refuse()
        proxy.cut()
        await eventually(lambda: b.subscriber.bus_state == "disconnected", within=3)
        for token in tokens:
            await a.revoke(token)
        await asyncio.sleep(0.3)
        proxy.refuse(False)

    assert a.stats.publish_failures == 0  # every one of them went out on the bus
    reconnected = await _wait_reconnect(b, before, within=10)
    await eventually(lambda: all(b.is_revoked(t) for t in tokens), within=1.0)
    recovered_after = time.monotonic() - reconnected
    # The start-up snapshot and the reconnect catch-up (counted once it has finished
    # checking the store's position, a moment after its rows are applied).
    await eventually(lambda: b.stats.resyncs >= 2, within=2)
    figures.update(
        fault=fault,
        tokens_published_while_away=len(tokens),
        recovered_ms_after_reconnect=ms(recovered_after),
        applied_from_bus=b.stats.applied,
        reconnects=b.stats.reconnects - before,
    )


@pytest.mark.parametrize("fault", ["sigstop-redis", "proxy-stall"])
async def test_hung_link_is_noticed_within_the_staleness_bound_and_fails_closed(
    make_node: NodeFactory,
    redis_server: RedisServer,
    proxy_factory: Any,
    sqlite_url: str,
    fault: str,
    figures: dict[str, Any],
) -> None:
    """Item 4: a silent, open connection for 3 x max staleness.

    The node must notice within the staleness bound (its own heartbeat stops coming
    back), say it is not ready, refuse every token of every kind for the rest of the
    outage (fail closed), and recover on its own once the link moves again.
    """
    max_staleness = 1.0
    proxy: TcpProxy = await proxy_factory(redis_server.port)
    url = redis_server.url if fault == "sigstop-redis" else proxy.url()
    node = await make_node(
        sqlite_url,
        redis_url=url,
        heartbeat_interval=0.1,
        max_staleness=max_staleness,
        resync_interval=0.5,
        fail_mode="closed",
    )
    await eventually(lambda: node.stats.heartbeats > 0 and node.status()["ready"], within=3)
    fresh = [claims(identity=f"user{i}") for i in range(20)]
    fresh += [{**claims(identity="r"), "type": "refresh"} for _ in range(5)]
    assert not any(node.is_revoked(t) for t in fresh)

    assert redis_server.proc is not None
    pid = redis_server.proc.pid
    outage = 3 * max_staleness
    started = time.monotonic()
    if fault == "sigstop-redis":
        os.kill(pid, signal.SIGSTOP)
    else:
        proxy.stall()
    accepted_during_outage = 0
    samples = 0
    try:
        await eventually(lambda: node.status()["stale"], within=max_staleness + 1.0)
        noticed = time.monotonic() - started
        status = node.status()
        assert status["ready"] is False
        assert "no confirmed sync" in status["reason"]
        # For the rest of the outage: no token of any kind gets in.
        while time.monotonic() - started < outage:
            samples += 1
            accepted_during_outage += sum(not node.is_revoked(t) for t in fresh)
            accepted_during_outage += not node.is_revoked(claims(identity=f"new{samples}"))
            assert not node.status()["ready"]
            await asyncio.sleep(0.01)
    finally:
        if fault == "sigstop-redis":
            os.kill(pid, signal.SIGCONT)
        else:
            proxy.resume()
    resumed = time.monotonic()
    assert accepted_during_outage == 0
    await eventually(lambda: not node.status()["stale"], within=15)
    recovered = time.monotonic() - resumed
    assert node.status()["ready"] is True
    assert not any(node.is_revoked(t) for t in fresh)
    # Noticed within the bound (plus the ticker's 0.1 s period and scheduling).
    assert noticed <= max_staleness + 0.5
    figures.update(
        fault=fault,
        max_staleness_s=max_staleness,
        outage_s=outage,
        noticed_after_ms=ms(noticed),
        decisions_sampled_while_stale=samples * (len(fresh) + 1),
        tokens_accepted_while_stale=accepted_during_outage,
        recovered_ms_after_link_resumed=ms(recovered),
        reconnects=node.stats.reconnects,
    )


async def test_fail_open_node_keeps_resyncing_on_time_while_redis_hangs(
    make_node: NodeFactory, redis_server: RedisServer, sqlite_url: str, figures: dict[str, Any]
) -> None:
    """Item 4, fail-open side: with Redis SIGSTOPped the store is the only way in, so the
    resync timer must keep its period.  Nothing on the timer's path may wait for the
    hung Redis (a heartbeat publish blocking the ticker for its 2 s timeout did)."""
    from revsync.changes import ChangeRequest, Kind
    from revsync.stores import store_from_url

    resync = 0.3
    node = await make_node(
        sqlite_url,
        redis_url=redis_server.url,
        heartbeat_interval=0.1,
        max_staleness=1.0,
        resync_interval=resync,
        fail_mode="open",
    )
    writer = store_from_url(sqlite_url)
    await writer.connect()
    assert redis_server.proc is not None
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    lags: list[float] = []
    try:
        await asyncio.sleep(0.5)  # the heartbeat publishes are now hanging
        for _ in range(6):
            token = claims()
            await writer.write(
                ChangeRequest(Kind.JTI, str(token["jti"]), True, float(token["exp"]))
            )
            lags.append(await eventually(lambda t=token: node.is_revoked(t), within=5))
            await asyncio.sleep(0.2)
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
        await writer.close()
    assert node.settings.fail_mode == "open"
    # One timer period, plus a catch-up and the ticker's 0.1 s tick.
    assert max(lags) <= resync + 0.4, lags
    figures.update(
        resync_interval_s=resync,
        max_ms_to_refuse_while_redis_hung=ms(max(lags)),
        revocations=len(lags),
    )


async def test_half_open_link_that_never_recovers_is_replaced_by_the_watchdog(
    make_node: NodeFactory,
    redis_server: RedisServer,
    proxy_factory: Any,
    sqlite_url: str,
    figures: dict[str, Any],
) -> None:
    """Item 4, the other half: the hung connection never comes back (a dropped NAT entry),
    though a new one would work.  No error ever surfaces on it; only the missing heartbeat
    tells, and the node must replace the connection by itself and be in sync again."""
    proxy: TcpProxy = await proxy_factory(redis_server.port)
    node = await make_node(
        sqlite_url,
        redis_url=proxy.url(),
        heartbeat_interval=0.1,
        max_staleness=2.0,
        resync_interval=600,
    )
    writer = await make_node(sqlite_url, redis_url=redis_server.url, resync_interval=600)
    await eventually(lambda: node.stats.heartbeats > 0, within=3)
    before = node.stats.reconnects
    proxy.blackhole()
    started = time.monotonic()
    token = claims()
    await writer.revoke(token)  # published into the black hole, as far as node is concerned
    await eventually(lambda: node.stats.reconnects > before, within=5)
    replaced = time.monotonic() - started
    await eventually(lambda: node.is_revoked(token) and not node.status()["stale"], within=2)
    assert node.subscriber.heartbeat_timeout == 1.0
    figures.update(
        heartbeat_timeout_s=node.subscriber.heartbeat_timeout,
        connection_replaced_after_ms=ms(replaced),
        in_sync_again_after_ms=ms(time.monotonic() - started),
    )
