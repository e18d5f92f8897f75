"""4. Mass revocation: ``revoke_many`` of 100,000 tokens, until three nodes refuse all.

Three api nodes run on one Redis and one store.  The bench process itself is a
fourth RevSync instance (the library, on a Quart app of its own, same settings)
and calls ``revoke_many`` with 100,000 ``(jti, exp)`` pairs.  From just before the
call, each node's /metrics is polled every 20 ms until its ``revsync_entries{kind="jti"}``
gauge holds the whole batch and its ``revsync_last_applied_seq`` reached the
batch's last seq.  Afterwards 200 tokens of the batch, chosen at random, are sent
to every node's /protected, and each must answer 401.

The bench's Redis (bus, and store for the Redis run) logs every command slower than
1 ms (SLOWLOG) during the batch: the longest is the longest time the batch kept that
Redis, and the bus on it, from answering anyone else.  Each script is named (``write``:
a part of the batch; ``range``: a page a node reads while catching up).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis
import structlog
from quart import Quart

from bench import common
from revsync import RevSync
from revsync.stores import redis as redis_store
from services.processes import Server, running

TARGET_SECONDS = 2.0  # bench/report.py: MASS_REVOCATION_SECONDS
SAMPLE = 200
SLOWLOG_MICROSECONDS = 1_000


def _slowlog_reset(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.config_set("slowlog-log-slower-than", SLOWLOG_MICROSECONDS)
        client.config_set("slowlog-max-len", 100_000)
        client.slowlog_reset()
    finally:
        client.close()


def _blocks(redis_url: str) -> dict[str, Any]:
    """The longest commands the bench's Redis ran since ``_slowlog_reset``, by name (a
    store script by its file name), in ms."""
    scripts = {
        hashlib.sha1(source.encode()).hexdigest(): name  # noqa: S324 - Redis's script id
        for name, source in redis_store._SOURCES.items()
    }
    client = redis.Redis.from_url(redis_url)
    try:
        entries = client.slowlog_get(100_000)
    finally:
        client.close()
    longest: dict[str, float] = {}
    counts: dict[str, int] = {}
    for entry in entries:
        words = entry["command"].split(b" ")
        # Redis also logs the commands a script calls, each within its script's time.
        name = "other commands"
        if words[0].upper() == b"EVALSHA" and len(words) > 1:
            name = scripts.get(words[1].decode(), "other script")
        longest[name] = max(longest.get(name, 0.0), entry["duration"] / 1000)
        counts[name] = counts.get(name, 0) + 1
    return {
        "longest_ms": dict(sorted(longest.items(), key=lambda item: -item[1])),
        "over_1ms": counts,
    }


def _gauges(text: str) -> tuple[float, float]:
    entries = seq = 0.0
    for line in text.splitlines():
        if line.startswith('revsync_entries{kind="jti"}'):
            entries = float(line.split()[-1])
        elif line.startswith("revsync_last_applied_seq "):
            seq = float(line.split()[-1])
    return entries, seq


async def _watch(url: str, entries: float, seq: int, start: float) -> float:
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            have, applied = _gauges((await client.get(url + "/metrics")).text)
            if have >= entries and applied >= seq:
                return time.perf_counter() - start
            if time.perf_counter() - start > 120:
                msg = f"{url}: {have:.0f} entries, seq {applied:.0f} after 120 s"
                raise RuntimeError(msg)
            await asyncio.sleep(0.02)


async def _mass(urls: list[str], env: dict[str, str], count: int) -> dict[str, Any]:
    # the bench process's own RevSync logs at warning and above only, like the nodes
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    app = Quart(__name__)
    app.config.update(JWT_SECRET_KEY=common.SECRET, JWT_BLACKLIST_ENABLED=True)
    revsync = RevSync(
        app,
        redis_url=env["REVSYNC_REDIS_URL"],
        store_url=env["REVSYNC_STORE_URL"],
        channel=env["REVSYNC_CHANNEL"],
        node_id="bench-revoker",
    )
    await revsync.start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            before = [_gauges((await client.get(u + "/metrics")).text)[0] for u in urls]
        exp = time.time() + 86_400
        jtis = [f"mass-{time.time_ns()}-{i}" for i in range(count)]
        pairs = [(jti, exp) for jti in jtis]
        head = await revsync.store.head()
        _slowlog_reset(env["REVSYNC_REDIS_URL"])
        start = time.perf_counter()
        watchers = [
            asyncio.create_task(_watch(u, b + count, head + count, start))
            for u, b in zip(urls, before, strict=True)
        ]
        changes = await revsync.revoke_many(pairs)
        returned = time.perf_counter() - start
        per_node = await asyncio.gather(*watchers)
        blocks = _blocks(env["REVSYNC_REDIS_URL"])
        if changes[-1].seq != head + count:
            msg = f"another writer interleaved: last seq {changes[-1].seq}, expected {head + count}"
            raise RuntimeError(msg)
    finally:
        await revsync.stop()
    sample = random.Random(7).sample(jtis, min(SAMPLE, count))
    refused = 0
    async with httpx.AsyncClient(timeout=10) as client:
        for url in urls:
            for jti in sample:
                headers = {"Authorization": f"Bearer {common.mint(jti)}"}
                resp = await client.get(url + "/protected", headers=headers)
                refused += resp.status_code == 401
    if refused != len(sample) * len(urls):
        msg = f"only {refused} of {len(sample) * len(urls)} sampled tokens refused"
        raise RuntimeError(msg)
    return {
        "revoke_many_s": returned,
        "per_node_s": per_node,
        "all_nodes_s": max(per_node),
        "sample_refused": refused,
        "redis_blocks": blocks,
    }


def _store_url(store: str, work: Path, redis_url: str) -> str | None:
    if store == "sqlite":
        return f"sqlite:///{work / 'mass.db'}"
    if store == "redis":
        common.redis_populate(redis_url, 0)
        return redis_url + "?prefix=revsync"
    try:
        url = common.pg_url()
    except Exception:  # any failure means "no PostgreSQL"
        return None
    common.pg_populate(url, 0)
    return url


def run(*, quick: bool) -> dict[str, Any]:
    count = 2_000 if quick else 100_000
    stores = ("sqlite",) if quick else ("sqlite", "postgres", "redis")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="revsync-bench-") as tmp:
        work = Path(tmp)
        with common.private_redis(work) as redis_url:
            for store in stores:
                store_url = _store_url(store, work, redis_url)
                if store_url is None:
                    results[store] = {"status": "not run: PostgreSQL unavailable"}
                    continue
                env = common.node_env(redis_url, store_url, common.channel())
                nodes = [
                    Server(f"mass-{store}-{i}", "services.api.app:app", env, work) for i in range(3)
                ]
                with running(*nodes):
                    for node in nodes:
                        node.wait_ready(timeout=common.READY_TIMEOUT)
                    row = asyncio.run(_mass([n.url for n in nodes], env, count))
                row["target"] = {
                    "seconds": TARGET_SECONDS,
                    "value": row["all_nodes_s"],
                    "met": row["all_nodes_s"] < TARGET_SECONDS,
                }
                results[store] = row
                longest = row["redis_blocks"]["longest_ms"]
                blocks = ", ".join(f"{name} {ms:.1f}" for name, ms in longest.items()) or "-"
                print(
                    f"  {store:8} revoke_many({count:,}) returned in {row['revoke_many_s']:.2f} s;"
                    f" all 3 nodes refuse all after {row['all_nodes_s']:.2f} s; longest Redis"
                    f" commands (ms): {blocks}"
                )
            if "postgres" in results and "status" not in results["postgres"]:
                common.pg_populate(common.pg_url(), 0)
    return {
        "method": (
            f"revoke_many of {count:,} (jti, exp) pairs by a RevSync instance in the bench "
            "process; time from the call until every node's /metrics shows all entries and "
            "the batch's last seq applied (20 ms polls); then "
            f"{SAMPLE} random tokens of the batch checked refused on every node; the bench "
            f"Redis (bus, and the Redis store) logs commands slower than "
            f"{SLOWLOG_MICROSECONDS / 1000:g} ms meanwhile (SLOWLOG): the longest is the longest "
            "time it answered no one else"
        ),
        "tokens": count,
        "stores": results,
    }
