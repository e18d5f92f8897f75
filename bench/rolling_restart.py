"""6. Rolling restart: every node restarted in turn while revocations keep coming.

N api nodes (6; 3 in the quick run) share one bus (a private redis-server) and one
store holding ``live`` revocations, filled in bulk as in section 3.  Each node reaches
its store through a proxy of its own (bench/store_proxy.py), so what one node's
restart costs the store is read off its proxy: requests, bytes each way, connections.

A writer thread revokes at a steady rate, round-robin over the nodes that are up, each
through POST /admin/revoke; an answered revocation is durable.  Meanwhile each node in
turn is stopped (SIGTERM), started again and timed until /readyz answers 200.  At the
end, after a pause for the last events, every node is asked about every revocation
the writer got an answer for (GET /protected with a token of that jti): a node that
accepts one has missed it.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench import common
from bench.store_proxy import Counts, StoreProxy, proxied_url
from services.processes import Server, running

RATE = 20.0
"""Revocations per second during the restarts."""
SETTLE = 1.0
"""Seconds after the last restart before the nodes are checked."""


class _Writer(threading.Thread):
    """Revokes at ``RATE`` per second, each time through the next node that is up."""

    def __init__(self, nodes: list[Server]) -> None:
        super().__init__(name="revoker", daemon=True)
        self.nodes = nodes
        self.down: set[int] = set()
        self.lock = threading.Lock()
        self.revoked: list[str] = []
        self.failed = 0
        self._done = threading.Event()

    def stop(self) -> None:
        self._done.set()
        self.join(30)

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            i = 0
            next_at = time.monotonic()
            while not self._done.is_set():
                with self.lock:
                    up = [n for k, n in enumerate(self.nodes) if k not in self.down]
                node = up[i % len(up)]
                jti = f"roll-{time.time_ns()}-{i}"
                try:
                    resp = client.post(
                        node.url + "/admin/revoke",
                        json={"jti": jti, "exp": time.time() + 86_400},
                        headers={"X-Admin-Token": common.ADMIN_TOKEN},
                    )
                    if resp.status_code == 200:
                        self.revoked.append(jti)
                    else:
                        self.failed += 1
                except httpx.HTTPError:
                    self.failed += 1  # the node went down under the request: not counted
                i += 1
                next_at += 1 / RATE
                self._done.wait(max(0.0, next_at - time.monotonic()))


async def _missed(urls: list[str], jtis: list[str]) -> dict[str, int]:
    """How many of ``jtis`` each node still accepts."""
    tokens = [common.mint(jti) for jti in jtis]
    out: dict[str, int] = {}
    limits = httpx.Limits(max_connections=8)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        for url in urls:

            async def accepted(token: str, url: str = url) -> bool:
                resp = await client.get(
                    url + "/protected", headers={"Authorization": f"Bearer {token}"}
                )
                if resp.status_code not in (200, 401):
                    raise RuntimeError(f"{url}/protected answered {resp.status_code}")
                return resp.status_code == 200

            found = await asyncio.gather(*(accepted(t) for t in tokens))
            out[url] = sum(found)
    return out


def _populate(store: str, redis_store_url: str, live: int) -> str:
    if store == "postgres":
        url = common.pg_url()  # already checked by run()
        common.pg_populate(url, live)
        return url
    common.redis_populate(redis_store_url, live)
    return redis_store_url + "?prefix=revsync"


def _roll(store: str, nodes_count: int, live: int, work: Path) -> dict[str, Any]:
    with (
        common.private_redis(work / "bus") as bus_url,
        common.private_redis(work / "store") as redis_store_url,
    ):
        base = _populate(store, redis_store_url, live)
        target = urlsplit(base)
        proxies = [
            StoreProxy(target.hostname or "127.0.0.1", target.port or 0, store)
            for _ in range(nodes_count)
        ]
        for proxy in proxies:
            proxy.__enter__()
        try:
            channel = common.channel()
            nodes = [
                Server(
                    f"{store}-roll{k}",
                    "services.api.app:app",
                    common.node_env(bus_url, proxied_url(store, proxy.port, base), channel),
                    work,
                )
                for k, proxy in enumerate(proxies)
            ]
            with running(*nodes):
                for node in nodes:
                    node.wait_ready(timeout=common.READY_TIMEOUT)
                writer = _Writer(nodes)
                writer.start()
                restarts: list[dict[str, Any]] = []
                started = time.monotonic()
                try:
                    for k, (node, proxy) in enumerate(zip(nodes, proxies, strict=True)):
                        with writer.lock:
                            writer.down.add(k)
                        node.stop()
                        proxy.take()  # forget what the old process read
                        node.start()
                        ready = node.wait_ready(timeout=common.READY_TIMEOUT, interval=0.01)
                        counts: Counts = proxy.take()
                        with writer.lock:
                            writer.down.discard(k)
                        restarts.append(
                            {
                                "ready_s": ready,
                                "requests": counts.requests,
                                "bytes_from_store": counts.from_store,
                                "bytes_to_store": counts.to_store,
                                "connections": counts.connections,
                            }
                        )
                        print(
                            f"  {store} node {k}: ready in {ready:.2f} s, "
                            f"{counts.requests} store requests, "
                            f"{counts.from_store / 2**20:.1f} MB read",
                            flush=True,
                        )
                    total = time.monotonic() - started
                finally:
                    writer.stop()
                time.sleep(SETTLE)
                missed = asyncio.run(_missed([n.url for n in nodes], writer.revoked))
        finally:
            for proxy in proxies:
                proxy.__exit__(None, None, None)
    return {
        "store": store,
        "nodes": nodes_count,
        "live": live,
        "rate_per_s": RATE,
        "rolling_s": total,
        "revocations": len(writer.revoked),
        "revoke_failures": writer.failed,
        "missed": sum(missed.values()),
        "restarts": restarts,
        "ready_median_s": statistics.median(r["ready_s"] for r in restarts),
        "requests_median": statistics.median(r["requests"] for r in restarts),
        "mb_from_store_median": statistics.median(r["bytes_from_store"] for r in restarts) / 2**20,
    }


def run(*, quick: bool) -> dict[str, Any]:
    nodes_count = 3 if quick else 6
    live = 2_000 if quick else 100_000
    rows = []
    with tempfile.TemporaryDirectory(prefix="revsync-bench-") as tmp:
        work = Path(tmp)
        for sub in ("bus", "store"):
            (work / sub).mkdir()
        for store in ("postgres", "redis"):
            if store == "postgres":
                try:
                    common.pg_url()
                except Exception as exc:  # any failure means "no PostgreSQL"
                    rows.append(
                        {"store": store, "status": f"not run: PostgreSQL unavailable ({exc})"}
                    )
                    continue
            rows.append(_roll(store, nodes_count, live, work))
    missed = sum(r.get("missed", 0) for r in rows)
    return {
        "method": (
            f"{nodes_count} api nodes on one bus and one store holding {live:,} live "
            f"revocations; revocations at {RATE:g}/s through the nodes that are up; each "
            "node in turn stopped (SIGTERM), started and timed to its first /readyz 200; "
            "store requests and bytes of each restart counted by a proxy between that "
            "node and the store (from stop to ready); at the end every node asked about "
            f"every answered revocation, {SETTLE:g} s after the last restart"
        ),
        "rows": rows,
        "target": {"missed": 0, "value": missed, "met": missed == 0},
    }
