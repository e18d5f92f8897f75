"""Sentinel trouble against the bus's failover following: a master switched back and
forth, every sentinel down (then back), and nodes stopped in the middle of a failover.
Nothing may leak a connection or spin, every node must end on the master of the
moment, synced, with revocations flowing over the bus."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import pytest
import redis

from revsync import RevSync
from tests.attacks15.conftest import Start
from tests.attacks15.sockets import connections_to
from tests.engine.conftest import claims, eventually
from tests.scale.conftest import SERVICE, SentinelSetup
from tests.scale.test_failover import _first_revocation, _sentinels_announce, _wait_for

HUNG_SENTINEL_WITHIN = 3.0
"""Seconds after the new master answers within which the first revocation reaches
every node when the first sentinel hangs (the reader's backoff, not the watch)."""


def _sentinel(setup: SentinelSetup, i: int = 0) -> redis.Redis:
    return redis.Redis(port=setup.sentinels[i].port, socket_timeout=2)


def _watches(setup: SentinelSetup) -> int:
    """Clients subscribed to something on the sentinels: the nodes' +switch-master
    watches (sentinels talk to each other without subscribing)."""
    total = 0
    for i, sentinel in enumerate(setup.sentinels):
        if not sentinel.running:
            continue
        client = _sentinel(setup, i)
        try:
            total += sum(1 for c in client.client_list() if int(c.get("sub", 0)) > 0)
        finally:
            client.close()
    return total


def _numsub(port: int, channel: str) -> int:
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        return int(client.pubsub_numsub(channel)[0][1])
    except redis.RedisError:
        return -1
    finally:
        client.close()


def _failover(setup: SentinelSetup) -> None:
    """SENTINEL FAILOVER, retried while no replica is ready to be promoted yet."""
    deadline = time.monotonic() + 30
    while True:
        client = _sentinel(setup)
        try:
            client.execute_command("SENTINEL", "FAILOVER", SERVICE)
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            client.close()


async def _over_the_bus(nodes: list[RevSync]) -> None:
    """A revocation on nodes[0] reaches every other node as a bus message."""
    applied = [n.stats.applied + n.stats.duplicates for n in nodes]
    token = claims()
    await nodes[0].revoke(token)
    await eventually(lambda: all(n.is_revoked(token) for n in nodes), within=3)
    await eventually(
        lambda: all(
            n.stats.applied + n.stats.duplicates > a
            for n, a in zip(nodes[1:], applied[1:], strict=True)
        ),
        within=2,
    )


async def test_a_master_switched_back_and_forth(
    sentinel_setup: SentinelSetup, start: Start
) -> None:
    setup = sentinel_setup
    nodes = [await start(setup.url()) for _ in range(2)]
    channel = nodes[0].settings.channel
    ports = [setup.master.port, setup.replica.port, *(s.port for s in setup.sentinels)]
    held = [connections_to(ports)]
    for _ in range(3):
        old = setup.master_port()
        _failover(setup)
        await eventually(lambda: setup.master_port() != old, within=20)  # noqa: B023
        new = setup.master_port()
        # Every node follows at the switch, long before the old master is demoted.
        await eventually(lambda: _numsub(new, channel) == len(nodes), within=5)  # noqa: B023
        await _over_the_bus(nodes)
        assert all(not n.status()["stale"] for n in nodes)
        await asyncio.sleep(0.5)
        held.append(connections_to(ports))
        # Wait for the old master to follow the new one, so it can be promoted again.
        await eventually(
            lambda: (
                redis.Redis(port=old, socket_timeout=1)  # noqa: B023
                .info("replication")
                .get("master_link_status")
                == "up"
            ),
            within=30,
        )
    print(f"\n[sentinel flapping] this process's connections to Redis and sentinels: {held}")
    assert _watches(setup) == len(nodes)
    # No growth: the same connections after three switches as after the first.
    assert max(held[1:]) <= held[1] + 2, held


async def test_every_sentinel_down_then_back(
    sentinel_setup: SentinelSetup, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    setup = sentinel_setup
    nodes = [await start(setup.url()) for _ in range(2)]
    await eventually(lambda: _watches(setup) == len(nodes), within=5)
    for sentinel in setup.sentinels:
        sentinel.kill()
    caplog.set_level(logging.DEBUG, logger="revsync")
    await asyncio.sleep(2.0)
    caplog.clear()
    cpu = time.process_time()
    await asyncio.sleep(4.0)
    busy = time.process_time() - cpu
    lost = [r for r in caplog.records if "sentinel_watch_lost" in r.getMessage()]
    sentinel_ports = [s.port for s in setup.sentinels]
    print(
        f"\n[sentinels down] in 4 s: {len(lost)} watch attempts for {len(nodes)} nodes, "
        f"{busy:.2f} s CPU, {connections_to(sentinel_ports)} connections to sentinels"
    )
    # Backoff to 5 s per node: a handful of attempts, not a loop.
    assert len(lost) <= 10 * len(nodes)
    # The master is up: the nodes stay synced and the bus carries revocations.
    assert all(not n.status()["stale"] for n in nodes)
    await _over_the_bus(nodes)
    for sentinel in setup.sentinels:
        sentinel.start()
    await eventually(lambda: _watches(setup) == len(nodes), within=20)

    def sentinels_ready() -> bool:
        for i in range(len(setup.sentinels)):
            client = _sentinel(setup, i)
            try:
                if not client.execute_command("SENTINEL", "REPLICAS", SERVICE):
                    return False
                if len(client.execute_command("SENTINEL", "SENTINELS", SERVICE)) < 2:
                    return False
            finally:
                client.close()
        return True

    await eventually(sentinels_ready, within=30)
    # The watches work again: a switch is followed at once.
    old = setup.master_port()
    _failover(setup)
    await eventually(lambda: setup.master_port() != old, within=20)
    new = setup.master_port()
    await eventually(lambda: _numsub(new, nodes[0].settings.channel) == len(nodes), within=5)
    await _over_the_bus(nodes)


async def test_stop_in_the_middle_of_a_failover(
    sentinel_setup: SentinelSetup, start: Start
) -> None:
    setup = sentinel_setup
    nodes = [await start(setup.url()) for _ in range(3)]
    ports = [setup.master.port, setup.replica.port, *(s.port for s in setup.sentinels)]
    old = setup.master.port
    setup.master.kill()
    took = []
    for node, when in zip(nodes, (0.1, 0.8, None), strict=True):
        if when is None:  # the last one once the replica is promoted
            await eventually(lambda: setup.master_port() != old, within=30)
        else:
            await asyncio.sleep(when)
        started = time.monotonic()
        await node.stop()
        took.append(time.monotonic() - started)
    print(f"\n[stop during a failover] stop() took {[round(t, 3) for t in took]} s")
    assert max(took) < 5, took
    # Nothing left open: no watch, no subscription, no pooled publisher connection,
    # no connection that asked the sentinels where the master is.
    await asyncio.sleep(0.2)
    assert connections_to(ports) == 0
    assert _watches(setup) == 0
    # Started again, a node finds the new master (its clients reconnect), and stopped
    # again it leaves nothing behind either.
    await nodes[0].start()
    await _over_the_bus(nodes[:1])
    assert not nodes[0].status()["stale"]
    await nodes[0].stop()
    await asyncio.sleep(0.2)
    assert connections_to(ports) == 0


@pytest.mark.parametrize("fault", ["hung", "killed"])
async def test_the_first_sentinel_dies_with_the_master(
    sentinel_setup: SentinelSetup, start: Start, fault: str
) -> None:
    """The first sentinel of the URL hangs (SIGSTOP: a host gone silent) or is killed
    (a sentinel on the master's host) as the master is killed; the other two still
    promote the replica.  The first revocation after the new master answers must reach
    every node within FOLLOW_WITHIN all the same (killed), or HUNG_SENTINEL_WITHIN.

    Broke before the fix: redis-py asks the sentinels in turn, and its default (ten
    retries with backoff per sentinel) held each discovery on the dead first sentinel
    for about 4 s (refused) or 30 s (hung), longer than the publish and subscribe
    bounds: no publish got through and the reader hung inside redis-py's reconnect
    (the first revocation reached the other nodes after 10 s or more)."""
    setup = sentinel_setup
    started = time.monotonic()
    nodes = [await start(setup.url()) for _ in range(3)]
    await eventually(lambda: _watches(setup) == len(nodes), within=5)
    first = setup.sentinels[0]
    assert first.proc is not None
    pid = first.proc.pid
    if fault == "hung":
        os.kill(pid, signal.SIGSTOP)
    else:
        first.kill()
    try:
        old = setup.master.port
        setup.master.kill()
        probe = SentinelSetup(setup.master, setup.replica, setup.sentinels[1:])
        reachable_at = await _wait_for(
            lambda: _sentinels_announce(probe, old), "a promoted master announced", within=30
        )
        if fault == "killed":
            await _first_revocation(nodes, started, reachable_at, "first sentinel killed")
            return
        # Hung: a node whose +switch-master watch is on the hung sentinel learns of the
        # switch only when that sentinel misses a PING (5 s of silence, then the
        # timeout), so it resubscribes on its reader's backoff instead: measured 0.85
        # to 1.35 s, not always within FOLLOW_WITHIN.  Before the fix, more than 10 s.
        token = claims()
        await nodes[0].revoke(token)
        await eventually(lambda: all(n.is_revoked(token) for n in nodes), within=10)
        took = time.monotonic() - reachable_at
        print(f"\n[first sentinel hung] every node refused it {took * 1000:.0f} ms after")
        assert took <= HUNG_SENTINEL_WITHIN, f"{took:.2f}s after the new master answered"
    finally:
        if fault == "hung":
            os.kill(pid, signal.SIGCONT)
