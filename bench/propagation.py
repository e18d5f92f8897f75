"""2. Propagation: revoke on one api node, time until the other nodes refuse the token.

Three api nodes (services/api plus GET /bench/lags, bench/apps/api_node.py) on one
Redis and one SQLite store.  Revocations go, one after another, to node 1's
POST /admin/revoke.  Measurements, in separate passes:

- subscriber side (nodes idle): each other node records, for every revocation it
  hears of on the bus, the moment it starts refusing the token minus the publisher's
  ``sent_at`` (stamped inside ``revoke()`` just before PUBLISH), through
  ``RevSync.stats.lag_observers``; exact values, not the buckets of /metrics'
  histogram.  Beside it, the bus's floor (bench/bus_floor.py): a process that does
  nothing but read the channel, timed the same way;
- HTTP poll (end to end): once node 1 has answered the revoke, poll GET /protected
  on nodes 2 and 3 with the revoked token until each answers 401; includes one HTTP
  round trip of resolution (about a millisecond here);
- under load: the subscriber-side pass again, spaced further apart, while wrk keeps
  every node saturated with GET /protected (the bus's floor beside it again): the
  subscriber shares its event loop, its process and the machine's cores with
  request handling.

Then the subscriber-side pass again with 1, 3, 6 and 12 subscriber nodes and one
publishing node, to show how the lag grows with the number of nodes.

A revocation a node reads from the store (its resync timer) before the bus message
reaches it has no lag to report; the passes say how many of those there were.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import common, loadgen
from services.processes import Process, Server, running

SPACING = 0.005  # seconds between revocations of a pass: the nodes are idle in between
LOADED_SPACING = 0.05  # under load
LOAD_CONNECTIONS = 16
LOAD_WARMUP = 1.5  # seconds of load before the first revocation
TARGET_P99_MS = 2.0
TARGET_P50_MS = 0.5
TARGET_LOADED_P99_MS = 20.0


async def _revoke(client: httpx.AsyncClient, url: str, jti: str) -> None:
    resp = await client.post(
        url + "/admin/revoke",
        json={"jti": jti, "exp": time.time() + 86_400},
        headers={"X-Admin-Token": common.ADMIN_TOKEN},
    )
    resp.raise_for_status()


async def _lags(client: httpx.AsyncClient, url: str) -> list[float]:
    resp = await client.get(url + "/bench/lags", params={"clear": "1"})
    resp.raise_for_status()
    lags: list[float] = resp.json()["lags"]
    return lags


async def subscriber_pass(
    publisher: str,
    subscribers: list[str],
    count: int,
    spacing: float = SPACING,
    *,
    paced: bool = False,
) -> tuple[list[float], int]:
    """``count`` revocations on ``publisher``: every subscriber's lags in ms, and how
    many (node, revocation) pairs were read from the store before the bus brought them.

    One after another, ``spacing`` apart; ``paced``: one every ``spacing`` seconds
    whether the previous one has been answered or not (a loaded node answers slowly).
    """
    # Idle connections are dropped before hypercorn's 5 s keep-alive ends them: a
    # request sent on one it is closing would fail.
    limits = httpx.Limits(keepalive_expiry=1.0)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for url in subscribers:
            await _lags(client, url)  # forget what came before
        pending = []
        jtis = [f"prop-{time.time_ns()}-{i}" for i in range(count)]
        for jti in jtis:
            revoke = _revoke(client, publisher, jti)
            if paced:
                pending.append(asyncio.create_task(revoke))
            else:
                await revoke
            await asyncio.sleep(spacing)
        await asyncio.gather(*pending)
        await asyncio.sleep(0.5)
        found: list[float] = []
        missed = 0
        for url in subscribers:
            lags = await _lags(client, url)
            missed += max(0, count - len(lags))
            found += [lag * 1000 for lag in lags]
        # A revocation a node read from the store before the bus brought it has no lag
        # (a loaded node's catch-up can win the race): counted, not an error.  One that
        # a node still accepts is lost, and the run fails.
        accepted = await _accepted(client, subscribers, jtis)
    if accepted:
        msg = f"{accepted} of {count * len(subscribers)} revocations still accepted"
        raise RuntimeError(msg)
    return found, missed


async def _accepted(client: httpx.AsyncClient, urls: list[str], jtis: list[str]) -> int:
    """How many (node, jti) pairs a node still accepts, asked with a token of each."""
    found = 0
    for url in urls:
        for jti in jtis:
            resp = await client.get(
                url + "/protected", headers={"Authorization": f"Bearer {common.mint(jti)}"}
            )
            if resp.status_code not in (200, 401):
                msg = f"{url}/protected answered {resp.status_code}: {resp.text[:200]}"
                raise RuntimeError(msg)
            found += resp.status_code == 200
    return found


async def _until_refused(client: httpx.AsyncClient, url: str, token: str, start: float) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        resp = await client.get(url + "/protected", headers=headers)
        if resp.status_code == 401:
            return (time.perf_counter() - start) * 1000
        if resp.status_code != 200:
            msg = f"{url}/protected answered {resp.status_code}: {resp.text[:200]}"
            raise RuntimeError(msg)
        if time.perf_counter() - start > 10:
            msg = f"{url} still accepts a token revoked 10 s ago"
            raise RuntimeError(msg)


async def poll_pass(publisher: str, others: list[str], count: int) -> list[float]:
    """Time from the revoke's answer until each other node answers 401, in ms."""
    clients = [httpx.AsyncClient(timeout=10) for _ in others]
    found: list[float] = []
    try:
        async with httpx.AsyncClient(timeout=10) as admin:
            for i in range(count):
                jti = f"poll-{time.time_ns()}-{i}"
                token = common.mint(jti)
                await _revoke(admin, publisher, jti)
                start = time.perf_counter()
                found += await asyncio.gather(
                    *(
                        _until_refused(c, url, token, start)
                        for c, url in zip(clients, others, strict=True)
                    )
                )
                await asyncio.sleep(SPACING)
    finally:
        for client in clients:
            await client.aclose()
    return found


@contextlib.contextmanager
def bus_floor(redis_url: str, channel: str, work: Path) -> Iterator[list[float]]:
    """Run bench/bus_floor.py for the duration; the list is filled with its lags (ms)
    when the block ends."""
    out = work / f"floor-{time.time_ns()}.json"
    args = [sys.executable, "-m", "bench.bus_floor", redis_url, channel, str(out)]
    floor = Process("bus-floor", args, env=common.base_env(), log=work / "bus-floor.log")
    lags: list[float] = []
    with running(floor):
        deadline = time.monotonic() + 10
        while not out.with_suffix(".ready").exists():
            if not floor.running or time.monotonic() > deadline:
                msg = f"bench.bus_floor did not subscribe:\n{floor.log_tail()}"
                raise RuntimeError(msg)
            time.sleep(0.01)
        yield lags
    lags += [lag * 1000 for lag in json.loads(out.read_text())]


def under_load(
    urls: list[str], redis_url: str, channel: str, work: Path, count: int
) -> dict[str, Any]:
    """The subscriber-side pass while wrk saturates every node with GET /protected."""
    # An upper bound: a loaded node answers revocations more slowly than they are sent,
    # so the last ones come late; the load is interrupted once they have come.
    seconds = LOAD_WARMUP + count * LOADED_SPACING * 10 + 30
    headers = {"Authorization": f"Bearer {common.mint()}"}
    loads = [loadgen.start(url + "/protected", headers, seconds, LOAD_CONNECTIONS) for url in urls]
    try:
        time.sleep(LOAD_WARMUP)
        with bus_floor(redis_url, channel, work) as floor:
            lags, missed = asyncio.run(
                subscriber_pass(urls[0], urls[1:], count, LOADED_SPACING, paced=True)
            )
        covered = all(load.poll() is None for load in loads)
    finally:
        summaries = [loadgen.interrupt(load) for load in loads]
    if not covered:
        msg = f"the load ({seconds:.0f} s) ended before the {count} revocations did"
        raise RuntimeError(msg)
    return {
        "revocations": count,
        "spacing_ms": LOADED_SPACING * 1000,
        "connections_per_node": LOAD_CONNECTIONS,
        "load_generator": loadgen.generator(),
        "node_rps": [round(s["rps"]) for s in summaries],
        "subscriber_side_ms": common.percentiles(lags),
        "from_store_first": missed,
        "bus_floor_ms": common.percentiles(floor),
    }


def _nodes(count: int, env: dict[str, str], work: Path, prefix: str) -> list[Server]:
    return [Server(f"{prefix}{i}", "bench.apps.api_node:app", env, work) for i in range(count)]


def run(*, quick: bool) -> dict[str, Any]:
    count = 50 if quick else 1_000
    loaded_count = 20 if quick else 200
    scale_count = 20 if quick else 300
    scales = (1, 3) if quick else (1, 3, 6, 12)
    gen = loadgen.generator()
    if gen != "wrk":
        print(loadgen.WARNING)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="revsync-bench-") as tmp:
        work = Path(tmp)
        with common.private_redis(work) as redis_url:
            channel = common.channel()
            env = common.node_env(redis_url, f"sqlite:///{work / 'revsync.db'}", channel)
            nodes = _nodes(3, env, work, "node")
            with running(*nodes):
                for node in nodes:
                    node.wait_ready(timeout=common.READY_TIMEOUT)
                urls = [node.url for node in nodes]
                # warm-up: first requests, connections and code paths
                asyncio.run(subscriber_pass(urls[0], urls[1:], 20))
                with bus_floor(redis_url, channel, work) as floor:
                    sub, missed = asyncio.run(subscriber_pass(urls[0], urls[1:], count))
                poll = asyncio.run(poll_pass(urls[0], urls[1:], count))
                loaded = under_load(urls, redis_url, channel, work, loaded_count)
            out["three_nodes"] = {
                "revocations": count,
                "subscriber_side_ms": common.percentiles(sub),
                "from_store_first": missed,
                "bus_floor_ms": common.percentiles(floor),
                "http_poll_ms": common.percentiles(poll),
            }
            three = out["three_nodes"]
            print(f"  3 nodes, subscriber side: {_fmt(three['subscriber_side_ms'])}")
            print(f"  3 nodes, bus floor:       {_fmt(three['bus_floor_ms'])}")
            print(f"  3 nodes, HTTP poll:       {_fmt(three['http_poll_ms'])}")
            print(f"  under load, subscriber:   {_fmt(loaded['subscriber_side_ms'])}")
            print(f"  under load, bus floor:    {_fmt(loaded['bus_floor_ms'])}")
            scaling = []
            for n in scales:
                publisher = Server(f"pub{n}-", "bench.apps.api_node:app", env, work)
                subs = _nodes(n, env, work, f"sub{n}-")
                with running(publisher, *subs):
                    for node in (publisher, *subs):
                        node.wait_ready(timeout=common.READY_TIMEOUT)
                    asyncio.run(subscriber_pass(publisher.url, [s.url for s in subs], 10))
                    lags, _ = asyncio.run(
                        subscriber_pass(publisher.url, [s.url for s in subs], scale_count)
                    )
                row = {"subscribers": n, "revocations": scale_count, **common.percentiles(lags)}
                scaling.append(row)
                print(f"  {n:2} subscriber(s): {_fmt(row)}")
            out["scaling"] = scaling
    idle = out["three_nodes"]["subscriber_side_ms"]
    loaded_p99 = loaded["subscriber_side_ms"]["p99"]
    loaded["target"] = {
        "p99_ms": TARGET_LOADED_P99_MS,
        "value": loaded_p99,
        "met": loaded_p99 < TARGET_LOADED_P99_MS,
    }
    return {
        "method": (
            f"{count} revocations, one at a time {SPACING * 1000:g} ms apart, via node 1's "
            "POST /admin/revoke; subscriber side: the moment each other node starts "
            "refusing the token minus the publisher's sent_at (RevSync.stats.lag_observers); "
            "bus floor: the same for a process that only reads the channel "
            "(bench/bus_floor.py); HTTP poll: time from the revoke's answer until "
            "GET /protected answers 401 on each other node; under load: "
            f"{loaded_count} revocations sent every {LOADED_SPACING * 1000:g} ms while "
            f"`wrk -t1 -c{LOAD_CONNECTIONS}` loads GET /protected on each of the 3 nodes; "
            f"scaling: {scale_count} revocations, one publishing node, N subscriber nodes "
            "(api nodes, one hypercorn worker each)"
        ),
        **out,
        "under_load": loaded,
        "target": {
            "p99_ms": TARGET_P99_MS,
            "value": idle["p99"],
            "met": idle["p99"] < TARGET_P99_MS,
        },
        "target_p50": {
            "p50_ms": TARGET_P50_MS,
            "value": idle["p50"],
            "met": idle["p50"] < TARGET_P50_MS,
        },
    }


def _fmt(stats: dict[str, Any]) -> str:
    return f"p50 {stats['p50']:.2f} ms  p99 {stats['p99']:.2f} ms  max {stats['max']:.2f} ms"
