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
"""

from __future__ import annotations

import re
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
_BACKFILL = re.compile(r"^revsync_backfill_seconds ([0-9.e+-]+)$", re.MULTILINE)


def backfill_seconds(url: str) -> float:
    """What a ready node reports as its start-up backfill's duration (/metrics)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = _BACKFILL.search(text)
    if found is None:
        msg = f"{url}/metrics has no revsync_backfill_seconds"
        raise RuntimeError(msg)
    return float(found.group(1))


def _measure(name: str, env: dict[str, str], work: Path, repeat: int) -> dict[str, Any]:
    times, backfills, rss = [], [], []
    for i in range(repeat):
        node = Server(f"{name}-{i}", "services.api.app:app", env, work)
        with running(node):
            times.append(node.wait_ready(timeout=180, interval=0.01))
            backfills.append(backfill_seconds(node.url))
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
                    point = _measure(f"{store}-{n}", env, work, repeat)
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
                results[store] = {
                    "points": rows,
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
