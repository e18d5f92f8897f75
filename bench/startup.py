"""3. Start-up backfill: time to /readyz 200 and resident memory, per store and size.

For each store (SQLite, PostgreSQL, Redis) and each size (0, then 10k, 100k, 1M
live jti revocations), the store is filled in bulk, never through ``revoke()``:

- SQLite: one transaction of ``executemany`` INSERTs (schema made by SqliteStore);
- PostgreSQL: one ``INSERT ... SELECT`` over ``generate_series`` in the bench's own
  database ``revsync_bench`` (schema made by PostgresStore), then VACUUM ANALYZE;
- Redis: a Lua script writing RedisStore's layout (row hash + log and expiry
  sorted sets), 20,000 rows per call, in the bench's private redis-server.

Then one api node (``hypercorn services.api.app:app``, one worker) is started and
timed from process start to the first 200 of /readyz (polled every 10 ms); the
backfill itself (from the start of the catch-up that made the node backfilled to its
end: the store's snapshot, the pages after it, the set built) is what the node reports
as ``revsync_backfill_seconds`` on /metrics; its resident memory (the whole process
group) is read 0.5 s later.  The delta is against the same store empty.  Each point is
the median of ``repeat`` starts.

Then, at the largest size, ``restarts``: ``NODES`` nodes restarted at once, first
reading the store, then taking up a checkpoint (REVSYNC_CHECKPOINT_PATH, written by a
node stopped just before, one file for all): seconds until every one is ready, rows
they read from the store (as they report them), and the store's own work: Redis'
command time (INFO commandstats), PostgreSQL's rows scanned and fetched from the
table (pg_stat_user_tables).
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import common
from services.processes import Server, running

TARGET_BACKFILL_SECONDS = 1.0
"""The backfill itself, from its start to backfilled (issue 17)."""
TARGET_SECONDS = 2.0
"""Ready (/readyz 200) from process start."""
TARGET_MB = 250.0
NODES = 3
"""Nodes restarted at once in the checkpoint comparison."""


def gauge(url: str, name: str) -> float:
    """A gauge of a ready node's /metrics (revsync_backfill_seconds, _rows)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
    if found is None:
        msg = f"{url}/metrics has no {name}"
        raise RuntimeError(msg)
    return float(found.group(1))


def backfill_seconds(url: str) -> float:
    """What a ready node reports as its start-up backfill's duration."""
    return gauge(url, "revsync_backfill_seconds")


def store_work(store: str, store_url: str, redis_url: str) -> float:
    """A cumulative figure of the store's own work: Redis' microseconds spent in
    commands, PostgreSQL's rows read from revsync_changes; 0 for SQLite (no server)."""
    if store == "redis":
        import redis

        client = redis.Redis.from_url(redis_url)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        return float(sum(entry["usec"] for entry in stats.values()))
    if store == "postgres":
        import asyncio

        import asyncpg

        async def read() -> float:
            await asyncio.sleep(1.0)  # the server publishes its statistics within a second
            conn = await asyncpg.connect(store_url)
            try:
                value = await conn.fetchval(
                    "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0)"
                    " FROM pg_stat_user_tables WHERE relname = 'revsync_changes'"
                )
            finally:
                await conn.close()
            return float(value or 0)

        return asyncio.run(read())
    return 0.0


def shut_down(server: Server, timeout: float = 60.0) -> None:
    """SIGTERM to hypercorn's main process alone, as an orchestrator sends it: it tells
    its worker to shut down gracefully (RevSync.stop writes the checkpoint), where the
    SIGTERM to the whole group of ``Server.stop`` ends the worker at once."""
    if server.proc is None:
        msg = f"{server.name} is not running"
        raise RuntimeError(msg)
    os.kill(server.proc.pid, signal.SIGTERM)
    server.proc.wait(timeout=timeout)


def _restart_all(
    name: str, env: dict[str, str], work: Path, nodes: int, store: tuple[str, str, str]
) -> dict[str, Any]:
    """``nodes`` nodes started at once: seconds until all are ready, rows they read,
    the store's work meanwhile."""
    before = store_work(*store)
    servers = [Server(f"{name}-{i}", "services.api.app:app", env, work) for i in range(nodes)]
    started = time.monotonic()
    with running(*servers):
        for server in servers:
            server.wait_ready(timeout=180, interval=0.01)
        all_ready = time.monotonic() - started
        rows = sum(gauge(s.url, "revsync_backfill_rows") for s in servers)
        backfill = max(backfill_seconds(s.url) for s in servers)
    return {
        "nodes": nodes,
        "all_ready_s": all_ready,
        "slowest_backfill_s": backfill,
        "rows_read": int(rows),
        "store_work": store_work(*store) - before,
    }


def _restarts(
    store: str, env: dict[str, str], work: Path, urls: tuple[str, str], nodes: int
) -> dict[str, Any]:
    """The checkpoint comparison (see the module docstring), at the store's current size."""
    figures = (store, *urls)
    without = _restart_all(f"{store}-plain", env, work, nodes, figures)
    path = work / f"{store}.checkpoint"
    path.unlink(missing_ok=True)
    checkpointed = {**env, "REVSYNC_CHECKPOINT_PATH": str(path)}
    writer = Server(f"{store}-checkpoint-writer", "services.api.app:app", checkpointed, work)
    with running(writer):
        writer.wait_ready(timeout=180, interval=0.01)
        shut_down(writer)
    if not path.is_file():
        msg = f"{writer.name} wrote no checkpoint at shutdown:\n{writer.log_tail()}"
        raise RuntimeError(msg)
    with_checkpoint = _restart_all(f"{store}-resumed", checkpointed, work, nodes, figures)
    return {
        "checkpoint_bytes": path.stat().st_size,
        "without_checkpoint": without,
        "with_checkpoint": with_checkpoint,
        "store_work_unit": {"redis": "µs of Redis command time", "postgres": "rows read"}.get(
            store, "none (no server)"
        ),
    }


def _measure(
    name: str, env: dict[str, str], work: Path, repeat: int, entries: int
) -> dict[str, Any]:
    times, backfills, rss = [], [], []
    for i in range(repeat):
        node = Server(f"{name}-{i}", "services.api.app:app", env, work)
        with running(node):
            times.append(node.wait_ready(timeout=180, interval=0.01))
            backfills.append(backfill_seconds(node.url))
            # A node that read fewer rows than the store holds measured nothing (a fill
            # that the store's reads do not see, say): fail rather than report it.
            rows = gauge(node.url, "revsync_backfill_rows")
            if rows < entries:
                msg = f"{name}: the node read {rows:,.0f} of the {entries:,} rows in its store"
                raise RuntimeError(msg)
            time.sleep(0.5)
            rss.append(node.rss_bytes())
    return {
        "ready_s": statistics.median(times),
        "ready_samples_s": times,
        "backfill_s": statistics.median(backfills),
        "backfill_samples_s": backfills,
        "rss_mb": statistics.median(rss) / 2**20,
    }


def _populate(store: str, url: str, redis_url: str, work: Path, n: int) -> str:
    if store == "sqlite":
        path = work / f"startup-{n}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        common.sqlite_populate(path, n)
        return f"sqlite:///{path}"
    if store == "postgres":
        common.pg_populate(url, n)
        return url
    common.redis_populate(redis_url, n)
    return redis_url + "?prefix=revsync"


def run(*, quick: bool) -> dict[str, Any]:
    sizes = (0, 2_000) if quick else (0, 10_000, 100_000, 1_000_000)
    repeat = 1 if quick else 2
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="revsync-bench-") as tmp:
        work = Path(tmp)
        with common.private_redis(work) as redis_url:
            for store in ("sqlite", "postgres", "redis"):
                url = ""
                if store == "postgres":
                    try:
                        url = common.pg_url()
                    except Exception as exc:  # any failure means "no PostgreSQL"
                        results[store] = {"status": f"not run: PostgreSQL unavailable ({exc})"}
                        print(f"  postgres: {results[store]['status']}")
                        continue
                rows = []
                for n in sizes:
                    started = time.perf_counter()
                    store_url = _populate(store, url, redis_url, work, n)
                    populate_s = time.perf_counter() - started
                    env = common.node_env(redis_url, store_url, common.channel())
                    point = _measure(f"{store}-{n}", env, work, repeat, n)
                    point = {"entries": n, "populate_s": populate_s, **point}
                    rows.append(point)
                    print(
                        f"  {store:8} {n:>9,} entries: backfill {point['backfill_s']:.2f} s, "
                        f"ready in {point['ready_s']:.2f} s, {point['rss_mb']:.0f} MB "
                        f"(filled in {populate_s:.1f} s)"
                    )
                base = rows[0]["rss_mb"]
                for row in rows:
                    row["rss_delta_mb"] = row["rss_mb"] - base
                    row["bytes_per_entry"] = (
                        row["rss_delta_mb"] * 2**20 / row["entries"] if row["entries"] else None
                    )
                largest = rows[-1]
                nodes = 2 if quick else NODES
                restarts = _restarts(store, env, work, (store_url, redis_url), nodes)
                for key in ("without_checkpoint", "with_checkpoint"):
                    r = restarts[key]
                    print(
                        f"  {store:8} {largest['entries']:>9,} entries, {r['nodes']} nodes at once "
                        f"{key.replace('_', ' ')}: all ready in {r['all_ready_s']:.2f} s, "
                        f"{r['rows_read']:,} rows read, store work {r['store_work']:,.0f}"
                    )
                results[store] = {
                    "points": rows,
                    "restarts": restarts,
                    "target": {
                        "entries": largest["entries"],
                        "backfill_s": largest["backfill_s"],
                        "backfill_target_s": TARGET_BACKFILL_SECONDS,
                        "ready_s": largest["ready_s"],
                        "ready_target_s": TARGET_SECONDS,
                        "rss_delta_mb": largest["rss_delta_mb"],
                        "rss_target_mb": TARGET_MB,
                        "met": largest["backfill_s"] < TARGET_BACKFILL_SECONDS
                        and largest["ready_s"] < TARGET_SECONDS
                        and largest["rss_delta_mb"] < TARGET_MB,
                    },
                }
            if "postgres" in results and "points" in results["postgres"]:
                common.pg_populate(common.pg_url(), 0)
    return {
        "method": (
            "store filled in bulk (see bench/startup.py), then one api node started: the "
            "backfill as the node reports it (revsync_backfill_seconds: start of the catch-up "
            "that made it backfilled to its end), seconds from process start to the first "
            "/readyz 200 (10 ms polls), resident memory of its process group 0.5 s later; "
            f"median of {repeat} start(s); delta against the same store empty"
        ),
        "sizes": list(sizes),
        "repeat": repeat,
        "stores": results,
    }
