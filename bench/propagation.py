"""2. Propagation: revoke on one api node, time until the other nodes refuse the token.

Three api nodes (services/api plus GET /bench/lags, bench/apps/api_node.py) on one
Redis and one SQLite store.  Revocations go, one after another, to node 1's
POST /admin/revoke.  Two measurements, in separate passes:

- subscriber side (nodes idle): each other node records, for every event it applies,
  receipt time minus the publisher's ``sent_at`` (stamped inside ``revoke()`` just
  before PUBLISH), through ``RevSync.stats.lag_observers``; exact values, not the
  buckets of /metrics' histogram;
- HTTP poll (end to end): once node 1 has answered the revoke, poll GET /protected
  on nodes 2 and 3 with the revoked token until each answers 401; includes one HTTP
  round trip of resolution (about a millisecond here).

Then the subscriber-side pass again with 1, 3, 6 and 12 subscriber nodes and one
publishing node, to show how the lag grows with the number of nodes.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import common
from services.processes import Server, running

SPACING = 0.005  # seconds between revocations of a pass: the nodes are idle in between


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


async def subscriber_pass(publisher: str, subscribers: list[str], count: int) -> list[float]:
    """``count`` revocations on ``publisher``; every subscriber's lags in ms."""
    async with httpx.AsyncClient(timeout=10) as client:
        for url in subscribers:
            await _lags(client, url)  # forget what came before
        for i in range(count):
            await _revoke(client, publisher, f"prop-{time.time_ns()}-{i}")
            await asyncio.sleep(SPACING)
        await asyncio.sleep(0.5)
        found: list[float] = []
        for url in subscribers:
            lags = await _lags(client, url)
            if len(lags) < count:
                msg = f"{url} applied {len(lags)} of {count} events from the bus"
                raise RuntimeError(msg)
            found += [lag * 1000 for lag in lags]
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


def _nodes(count: int, env: dict[str, str], work: Path, prefix: str) -> list[Server]:
    return [Server(f"{prefix}{i}", "bench.apps.api_node:app", env, work) for i in range(count)]


def run(*, quick: bool) -> dict[str, Any]:
    count = 50 if quick else 1_000
    scale_count = 20 if quick else 300
    scales = (1, 3) if quick else (1, 3, 6, 12)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="revsync-bench-") as tmp:
        work = Path(tmp)
        with common.private_redis(work) as redis_url:
            env = common.node_env(redis_url, f"sqlite:///{work / 'revsync.db'}", common.channel())
            nodes = _nodes(3, env, work, "node")
            with running(*nodes):
                for node in nodes:
                    node.wait_ready(timeout=common.READY_TIMEOUT)
                urls = [node.url for node in nodes]
                # warm-up: first requests, connections and code paths
                asyncio.run(subscriber_pass(urls[0], urls[1:], 20))
                sub = asyncio.run(subscriber_pass(urls[0], urls[1:], count))
                poll = asyncio.run(poll_pass(urls[0], urls[1:], count))
            out["three_nodes"] = {
                "revocations": count,
                "subscriber_side_ms": common.percentiles(sub),
                "http_poll_ms": common.percentiles(poll),
            }
            print(f"  3 nodes, subscriber side: {_fmt(out['three_nodes']['subscriber_side_ms'])}")
            print(f"  3 nodes, HTTP poll:       {_fmt(out['three_nodes']['http_poll_ms'])}")
            scaling = []
            for n in scales:
                publisher = Server(f"pub{n}-", "bench.apps.api_node:app", env, work)
                subs = _nodes(n, env, work, f"sub{n}-")
                with running(publisher, *subs):
                    for node in (publisher, *subs):
                        node.wait_ready(timeout=common.READY_TIMEOUT)
                    asyncio.run(subscriber_pass(publisher.url, [s.url for s in subs], 10))
                    lags = asyncio.run(
                        subscriber_pass(publisher.url, [s.url for s in subs], scale_count)
                    )
                row = {"subscribers": n, "revocations": scale_count, **common.percentiles(lags)}
                scaling.append(row)
                print(f"  {n:2} subscriber(s): {_fmt(row)}")
            out["scaling"] = scaling
    p99 = out["three_nodes"]["subscriber_side_ms"]["p99"]
    return {
        "method": (
            f"{count} revocations, one at a time {SPACING * 1000:g} ms apart, via node 1's "
            "POST /admin/revoke; subscriber side: receipt minus publisher's sent_at recorded "
            "by each other node (RevSync.stats.lag_observers); HTTP poll: time from the "
            "revoke's answer until GET /protected answers 401 on each other node; scaling: "
            f"{scale_count} revocations, one publishing node, N subscriber nodes "
            "(api nodes, one hypercorn worker each)"
        ),
        **out,
        "target": {"p99_ms": 5.0, "value": p99, "met": p99 < 5.0},
    }


def _fmt(stats: dict[str, Any]) -> str:
    return f"p50 {stats['p50']:.2f} ms  p99 {stats['p99']:.2f} ms  max {stats['max']:.2f} ms"
