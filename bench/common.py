"""What every benchmark shares: machine facts, result files, servers and stores on loopback.

Servers are run by ``services.processes`` (a session each, stopped by process group,
so a hypercorn worker never outlives its benchmark).  Every run gets
a private ``redis-server`` on a free port (other programs on the machine may flush
the shared one) and, for PostgreSQL, a database of its own (``revsync_bench``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import secrets
import sqlite3
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt

from revsync.stores._common import HISTORY_SLOTS
from services.processes import RedisServer, clean_env, free_port, running

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("REVSYNC_BENCH_RESULTS") or ROOT / "bench" / "results")
PG_ADMIN_URL = os.environ.get("REVSYNC_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
PG_DB = os.environ.get("REVSYNC_BENCH_PG_DB", "revsync_bench")
"""The bench's own database; REVSYNC_BENCH_PG_DB gives runs side by side one each."""
SECRET = "bench-" + "s" * 40  # JWT_SECRET_KEY of every bench node (>= 32 bytes)
ADMIN_TOKEN = "bench-admin-token-0123456789"


def machine() -> dict[str, Any]:
    """The facts a reader needs to judge a figure: CPU, cores, load, versions."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem_gb = round(int(first.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gb": mem_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_result(name: str, data: dict[str, Any], *, quick: bool) -> Path:
    """bench/results/<name>.json (``<name>.quick.json`` for quick runs, so CI never
    replaces a full result); the machine facts are added at the end of the run."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")
    payload = {"benchmark": name, "quick": quick, "machine": machine(), **data}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")
    return path


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max (plus count and mean) of a list of samples."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "count": len(ordered),
        "p50": pick(0.50),
        "p90": pick(0.90),
        "p99": pick(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


# -- processes (run by services.processes) ---------------------------------------------

READY_TIMEOUT = 120.0
"""Seconds a bench server may take to get ready (a node backfilling a large store)."""


def base_env(**extra: str) -> dict[str, str]:
    """The environment of a bench server: no inherited REVSYNC_*/JWT_* settings."""
    return clean_env(PYTHONPATH=str(ROOT), **extra)


def node_env(redis_url: str, store_url: str, channel: str, **extra: str) -> dict[str, str]:
    """Environment of an api node (services/api) for the benchmarks."""
    return base_env(
        JWT_SECRET_KEY=SECRET,
        JWT_ACCESS_TOKEN_EXPIRES="86400",
        REVSYNC_REDIS_URL=redis_url,
        REVSYNC_STORE_URL=store_url,
        REVSYNC_CHANNEL=channel,
        REVSYNC_ADMIN_TOKEN=ADMIN_TOKEN,
        REVSYNC_STARTUP_TIMEOUT="120",
        **extra,
    )


@contextlib.contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    """A redis-server of our own on a free port, stopped at the end; yields its URL."""
    with running(RedisServer(free_port(), workdir)) as (server,):
        yield server.url


def channel() -> str:
    return f"revsync-bench-{secrets.token_hex(4)}"


# -- tokens --------------------------------------------------------------------------------


def mint(jti: str | None = None, identity: str = "test", lifetime: int = 86_400) -> str:
    """An access token the api node accepts (the claims revsync.jwt's
    create_access_token writes), signed with the bench nodes' secret."""
    now = int(time.time())
    claims = {
        "iat": now - 1,
        "nbf": now - 1,
        "jti": jti or str(uuid.uuid4()),
        "exp": now + lifetime,
        "identity": identity,
        "fresh": False,
        "type": "access",
    }
    return pyjwt.encode(claims, SECRET, algorithm="HS256")


# -- bulk population of the stores (never through revoke: a million revokes take hours) -------


def jti_of(i: int) -> str:
    """A uuid4-shaped jti, different for every ``i`` (36 characters, as real ones)."""
    return str(uuid.UUID(int=(i * 0x9E3779B97F4A7C15_F39CC0605CEDC834) % (1 << 128), version=4))


def sqlite_populate(path: Path, n: int, start: int = 0) -> None:
    """Create the store's schema (through SqliteStore) and insert n live jti rows in
    one transaction with executemany."""
    from revsync.stores import _layout as layout
    from revsync.stores.sqlite import SqliteStore

    async def schema() -> None:
        store = SqliteStore(path)
        await store.connect()
        await store.close()

    asyncio.run(schema())
    now = time.time()
    conn = sqlite3.connect(path)
    try:
        with conn:
            (head,) = conn.execute(layout.HEAD).fetchone()
            rows = (
                (
                    head + k + 1,
                    "jti",
                    jti_of(start + k),
                    1,
                    now + 3600 + (k % 86_400),
                    None,
                    None,
                    now,
                )
                for k in range(n)
            )
            conn.executemany(layout.insert(layout.CHANGES, layout.CHANGE_COLUMNS), rows)
            conn.execute(layout.SET_HEAD, (head + n,))
            if n:  # the history ring entry a write of these rows leaves (checkpoints check it)
                conn.execute(_RECORD_HISTORY, ((head + n) % HISTORY_SLOTS, head + 1, head + n, now))
    finally:
        conn.close()


_RECORD_HISTORY = (
    "INSERT INTO revsync_history (slot, first, seq, stamp) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (slot) DO UPDATE"
    " SET first = EXCLUDED.first, seq = EXCLUDED.seq, stamp = EXCLUDED.stamp"
)
"""What a store write records in the history ring (revsync/stores/_sql.py)."""


def pg_url() -> str:
    """URL of the bench's own PostgreSQL database, created on first use."""
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DB)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{PG_DB}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_DB


def pg_populate(url: str, n: int) -> None:
    """Empty the store, then insert n live jti rows with one server-side
    INSERT ... SELECT over generate_series (uuid-shaped keys from md5)."""
    import asyncpg

    from revsync.stores import _layout as layout
    from revsync.stores.postgres import PostgresStore, numbered

    columns = ", ".join(layout.CHANGE_COLUMNS)
    fill = (
        f"INSERT INTO {layout.CHANGES} ({columns})"  # noqa: S608 - names from revsync's layout
        " SELECT g, 'jti', md5(g::text)::uuid::text, true,"
        " $2 + 3600 + (g % 86400), NULL, NULL, $2"
        " FROM generate_series(1, $1::bigint) g"
    )

    async def fill_store() -> None:
        store = PostgresStore(url)
        await store.connect()
        await store.close()
        conn = await asyncpg.connect(url, timeout=10)
        try:
            now = time.time()
            async with conn.transaction():
                await conn.execute(f"TRUNCATE {layout.CHANGES}, revsync_history")
                await conn.execute(fill, n, now)
                await conn.execute(numbered(layout.SET_HEAD), n)
                if n:  # the history ring entry a write of these rows leaves
                    await conn.execute(numbered(_RECORD_HISTORY), n % HISTORY_SLOTS, 1, n, now)
            await conn.execute(f"VACUUM ANALYZE {layout.CHANGES}")
        finally:
            await conn.close()

    asyncio.run(fill_store())


# Rows made inside Redis by this script, BATCH rows per call, with RedisStore's own
# put_row (revsync/stores/lua/rows.lua).  KEYS: counter, log, exp, hist.  ARGV: prefix,
# first index, count, now, base exp.
_REDIS_FILL = """
local first, count = tonumber(ARGV[2]), tonumber(ARGV[3])
local now, exp0 = ARGV[4], tonumber(ARGV[5])
for i = first, first + count - 1 do
  local key = redis.sha1hex(tostring(i))
  key = string.sub(key, 1, 8) .. '-' .. string.sub(key, 9, 12) .. '-4' .. string.sub(key, 14, 16)
    .. '-8' .. string.sub(key, 18, 20) .. '-' .. string.sub(key, 21, 32)
  local expires = string.format('%d', exp0 + (i % 86400))
  local seq = string.format('%d', i)
  local doc = row_doc(seq, 'jti', key, '1', expires, false, false, now)
  local target = member_of('jti', key)
  put_row(target, seq, '1', expires, false, false, doc, false)
  -- put_row writes the row only; the log and expiry sorted sets and the snapshot's
  -- index (index.lua) are the writer's
  redis.call('ZADD', KEYS[2], seq, target)
  redis.call('ZADD', KEYS[3], expires, target)
  redis.call('ZADD', index_key('revoked'), seq, key .. '\\n' .. expires)
end
local last = first + count - 1
redis.call('SET', KEYS[1], string.format('%d', last))
-- a fill of an empty store (FLUSHDB first): the index holds every row
redis.call('HSET', index_key('state'), 'seq', string.format('%d', last), 'complete', '1')
-- the history ring entry a write of these rows leaves (checkpoints check it)
redis.call('HSET', KEYS[4], string.format('%d', last % HISTORY_SLOTS),
  string.format('%d', first) .. ' ' .. string.format('%d', last) .. ' ' .. now)
return count
"""
REDIS_BATCH = 20_000


def redis_populate(url: str, n: int, prefix: str = "revsync") -> None:
    """FLUSHDB (the bench's private Redis), then n rows made by a Lua script in batches."""
    import redis

    from revsync.stores._layout import RedisKeys
    from revsync.stores.redis import lua_script

    keys = RedisKeys(prefix)
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        fill = client.register_script(lua_script(_REDIS_FILL, "index", "rows"))
        now = time.time()
        for first in range(1, n + 1, REDIS_BATCH):
            count = min(REDIS_BATCH, n - first + 1)
            fill(
                keys=[keys.counter, keys.log, keys.expiry, keys.history],
                args=[keys.base, first, count, repr(now), int(now) + 3600],
            )
    finally:
        client.close()
