"""8. What one node start costs the store, and what a started node costs it after.

For PostgreSQL and the Redis store, at 0, 10k, 100k and 1M live revocations (filled
in bulk, bench/common.py): one api node is started with its store reached through a
counting proxy (bench/store_proxy.py) and timed to its first /readyz 200; the proxy's
requests, bytes each way and connections from process start to ready are the cost
of one start.  The node then runs idle for ``IDLE_S`` seconds with
``REVSYNC_RESYNC_INTERVAL=1`` (resync every second, instead of the default 5), and
the proxy's counts over that window, divided by the resyncs the node made in it (its
``revsync_resyncs_total`` from /metrics), are what one anti-entropy round costs the
store.

SQLite has no wire to count: the store is a file on the node's host, so it cannot
serve a fleet of hosts.  Its row is the bytes the node's processes read
(``rchar`` of /proc/<pid>/io, every read call) from start to ready, less the same
at an empty store.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench import common
from bench.store_proxy import StoreProxy, proxied_url
from services.processes import Server, group_members, running

IDLE_S = 5.0
"""Seconds a started node is watched idle (2 in the quick run)."""
RESYNC_S = 1.0


def _resyncs(node: Server) -> float:
    """The node's count of catch-ups from the store so far."""
    text = httpx.get(node.url + "/metrics", timeout=5).text
    found = re.search(r"^revsync_resyncs_total ([0-9.e+]+)$", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"{node.name}: no revsync_resyncs_total in /metrics")
    return float(found.group(1))


def _rchar(node: Server) -> int:
    """Bytes read by every process of the node's group so far."""
    total = 0
    for pid in group_members(node.proc.pid) if node.proc is not None else []:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                if line.startswith("rchar:"):
                    total += int(line.split()[1])
    return total


def _populate(store: str, n: int, work: Path, redis_store_url: str) -> str:
    if store == "sqlite":
        path = work / f"start-cost-{n}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        common.sqlite_populate(path, n)
        return f"sqlite:///{path}"
    if store == "postgres":
        url = common.pg_url()
        common.pg_populate(url, n)
        return url
    common.redis_populate(redis_store_url, n)
    return redis_store_url + "?prefix=revsync"


def _start_sqlite(env: dict[str, str], work: Path, n: int) -> dict[str, Any]:
    node = Server(f"start-cost-sqlite-{n}", "services.api.app:app", env, work)
    with running(node):
        ready = node.wait_ready(timeout=common.READY_TIMEOUT, interval=0.01)
        read = _rchar(node)
    return {"entries": n, "ready_s": ready, "process_read_bytes": read}


def _start_proxied(
    store: str, base: str, bus: str, work: Path, n: int, idle_s: float
) -> dict[str, Any]:
    target = urlsplit(base)
    with StoreProxy(target.hostname or "127.0.0.1", target.port or 0, store) as proxy:
        env = common.node_env(
            bus,
            proxied_url(store, proxy.port, base),
            common.channel(),
            REVSYNC_RESYNC_INTERVAL=str(RESYNC_S),
        )
        node = Server(f"start-cost-{store}-{n}", "services.api.app:app", env, work)
        with running(node):
            ready = node.wait_ready(timeout=common.READY_TIMEOUT, interval=0.01)
            start = proxy.take()
            before = _resyncs(node)
            time.sleep(idle_s)
            idle = proxy.take()
            # The /metrics reads go to the node, not the store: the proxy never sees them.
            resyncs = _resyncs(node) - before
    if resyncs < 1:
        raise RuntimeError(f"{store} node made no resync in {idle_s:g} s idle")
    return {
        "entries": n,
        "ready_s": ready,
        "requests": start.requests,
        "bytes_from_store": start.from_store,
        "bytes_to_store": start.to_store,
        "connections": start.connections,
        "resyncs_counted": resyncs,
        "resync_requests": idle.requests / resyncs,
        "resync_bytes_from_store": idle.from_store / resyncs,
        "resync_bytes_to_store": idle.to_store / resyncs,
    }


def _per_row(points: list[dict[str, Any]], key: str) -> float | None:
    """(largest - empty) / rows: what each live revocation adds to a start."""
    first, last = points[0], points[-1]
    if not last["entries"]:
        return None
    return float(last[key] - first[key]) / float(last["entries"])


def run(*, quick: bool) -> dict[str, Any]:
    sizes = (0, 2_000) if quick else (0, 10_000, 100_000, 1_000_000)
    idle_s = 2.0 if quick else IDLE_S
    stores: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="revsync-bench-") as tmp:
        work = Path(tmp)
        with (
            common.private_redis(work) as bus,
            common.private_redis(work) as redis_store,
        ):
            for store in ("sqlite", "postgres", "redis"):
                if store == "postgres":
                    try:
                        common.pg_url()
                    except Exception as exc:  # any failure means "no PostgreSQL"
                        stores[store] = {"status": f"not run: PostgreSQL unavailable ({exc})"}
                        continue
                points = []
                for n in sizes:
                    base = _populate(store, n, work, redis_store)
                    if store == "sqlite":
                        env = common.node_env(bus, base, common.channel())
                        point = _start_sqlite(env, work, n)
                    else:
                        point = _start_proxied(store, base, bus, work, n, idle_s)
                    points.append(point)
                    print(f"  {store:8} {n:>9,}: {point}", flush=True)
                if store == "sqlite":
                    empty = points[0]["process_read_bytes"]
                    for p in points:
                        p["bytes_from_store"] = p["process_read_bytes"] - empty
                per_row = {"bytes_from_store": _per_row(points, "bytes_from_store")}
                if store != "sqlite":
                    per_row["requests"] = _per_row(points, "requests")
                stores[store] = {"points": points, "per_row": per_row}
            if "points" in stores.get("postgres", {}):
                common.pg_populate(common.pg_url(), 0)
    return {
        "method": (
            "store filled in bulk, then one api node started with its store behind a counting "
            "proxy (PostgreSQL: Query and Execute messages; Redis: RESP commands): requests, "
            "bytes and connections from process start to the first /readyz 200; then "
            f"{idle_s:g} s idle with REVSYNC_RESYNC_INTERVAL={RESYNC_S:g}, divided by the "
            "resyncs the node counted in it, for one anti-entropy round. SQLite: bytes read "
            "by the node's processes (/proc rchar) to ready, less the same at an empty store"
        ),
        "sizes": list(sizes),
        "stores": stores,
    }
