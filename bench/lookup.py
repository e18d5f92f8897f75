"""5. The lookup itself: the local revocation set beside cachetools' TLRUCache and a Redis GET.

Measures, for N revoked jtis (uuid4 strings, as the JWT layer issues):

- lookup ns per ``is_revoked`` call, for a revoked jti (hit) and another (miss);
  each jti is a fresh string whose hash is not cached yet, as one decoded from a
  token is, and the loop's own cost is included (shown as "loop" alone);
- the same question asked of Redis (the bench's private redis-server on loopback,
  holding the same N keys): one GET per lookup, with redis-py's blocking client and
  with ``redis.asyncio`` (what a Quart app awaits per request);
- seconds to load N pre-built Changes (a start-up snapshot), best of several runs;
- bytes per entry, measured with tracemalloc, key strings and expiries included.

Part of ``python -m bench`` (``--only lookup``).  Timings on a shared machine are
noisy; each in-memory figure is the best of ``repeat`` runs, each Redis figure the
best of ``repeat`` runs of ``REDIS_LOOKUPS`` sequential GETs.
"""

from __future__ import annotations

import asyncio
import gc
import random
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from cachetools import TLRUCache

from bench import common
from revsync._revocation_set import RevocationSet
from revsync.changes import Change, Kind

LOOKUPS = 100_000
REDIS_LOOKUPS = 5_000
CHUNK = 500  # fresh strings made per timed batch: small enough to stay in cache
Lookup = Callable[[object, str | None, object], bool]


def make_changes(n: int, now: float, rng: random.Random) -> Iterator[Change]:
    """n jti revocations expiring over the next day."""
    for seq in range(1, n + 1):
        key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        yield Change(seq, Kind.JTI, key, True, now + rng.uniform(60, 86_400), None, None, now)


def tlru(n: int) -> TLRUCache[str, float]:
    """A TLRUCache that expires each jti at its token's expiry."""
    return TLRUCache(maxsize=2 * n, ttu=lambda _key, expires_at, _now: expires_at, timer=time.time)


def load_tlru(cache: TLRUCache[str, float], changes: Iterator[Change] | list[Change]) -> None:
    for change in changes:
        cache[change.key] = change.expires_at


def best_load_seconds(
    load: Callable[[list[Change]], object], changes: list[Change], repeat: int
) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        target = load(changes)
        best = min(best, time.perf_counter() - started)
        del target
    return best


def lookup_ns(lookup: Lookup, jtis: list[str], repeat: int) -> float:
    """Best-of-``repeat`` ns per call, each call on a fresh, unhashed copy of a jti."""
    best = float("inf")
    for _ in range(repeat):
        total = 0
        for start in range(0, len(jtis), CHUNK):
            fresh = [jti.encode().decode() for jti in jtis[start : start + CHUNK]]
            started = time.perf_counter_ns()
            for jti in fresh:
                lookup(jti, "user-1", 1_700_000_000)
            total += time.perf_counter_ns() - started
        best = min(best, total / len(jtis))
    return best


def bytes_per_entry(n: int, build: Callable[[Iterator[Change]], object], now: float) -> float:
    """Memory held by a structure built from n fresh Changes, per entry."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        target = build(make_changes(n, now, random.Random(2)))
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del target
    return used / n


def _no_op(_jti: object, _identity: str | None, _iat: object) -> bool:
    return False


def _tlru_lookup(cache: TLRUCache[str, float]) -> Lookup:
    """An ``is_revoked`` for a TLRUCache: is the jti there and unexpired."""

    def is_revoked(jti: object, _identity: str | None, _iat: object) -> bool:
        return jti in cache

    return is_revoked


def _build_set(changes: Iterator[Change] | list[Change]) -> RevocationSet:
    revocations = RevocationSet()
    revocations.load(changes)
    return revocations


def _build_tlru(n: int) -> Callable[[Iterator[Change] | list[Change]], TLRUCache[str, float]]:
    def build(changes: Iterator[Change] | list[Change]) -> TLRUCache[str, float]:
        cache = tlru(n)
        load_tlru(cache, changes)
        return cache

    return build


def run(n: int, repeat: int) -> dict[str, Any]:
    now = time.time()
    rng = random.Random(1)
    changes = list(make_changes(n, now, rng))
    hits = [change.key for change in rng.sample(changes, min(LOOKUPS, n))]
    misses = [str(uuid.uuid4()) for _ in range(min(LOOKUPS, n))]

    results: dict[str, Any] = {"loop_ns": lookup_ns(_no_op, misses, repeat)}

    revocations = _build_set(changes)
    assert all(revocations.is_revoked(jti, None, None) for jti in hits[:100])
    assert not any(revocations.is_revoked(jti, None, None) for jti in misses[:100])
    results["revocation_set"] = {
        "hit_ns": lookup_ns(revocations.is_revoked, hits, repeat),
        "miss_ns": lookup_ns(revocations.is_revoked, misses, repeat),
    }
    del revocations
    results["revocation_set"]["load_s"] = best_load_seconds(_build_set, changes, repeat)

    cache = _build_tlru(n)(changes)
    tlru_is_revoked = _tlru_lookup(cache)
    results["tlru_cache"] = {
        "hit_ns": lookup_ns(tlru_is_revoked, hits, repeat),
        "miss_ns": lookup_ns(tlru_is_revoked, misses, repeat),
    }
    del cache, tlru_is_revoked
    results["tlru_cache"]["load_s"] = best_load_seconds(
        _build_tlru(n), changes, max(1, repeat // 2)
    )

    del changes
    results["revocation_set"]["bytes_per_entry"] = bytes_per_entry(n, _build_set, now)
    results["tlru_cache"]["bytes_per_entry"] = bytes_per_entry(n, _build_tlru(n), now)
    return results


def redis_get_ns(
    redis_url: str, keys: list[str], hits: list[str], misses: list[str], repeat: int
) -> dict[str, float]:
    """Fill Redis with ``keys`` (pipelined SETs with a TTL), then ns per GET."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
        for start in range(0, len(keys), 10_000):
            with client.pipeline(transaction=False) as pipe:
                for key in keys[start : start + 10_000]:
                    pipe.set("revoked:" + key, "1", ex=86_400)
                pipe.execute()
        results: dict[str, float] = {}
        for label, sample in (("hit", hits), ("miss", misses)):
            sample = sample[:REDIS_LOOKUPS]
            best = float("inf")
            for _ in range(repeat):
                started = time.perf_counter_ns()
                for key in sample:
                    client.get("revoked:" + key)
                best = min(best, (time.perf_counter_ns() - started) / len(sample))
            results[f"{label}_ns"] = best
            results[f"async_{label}_ns"] = asyncio.run(_async_get_ns(redis_url, sample, repeat))
        client.flushdb()
    finally:
        client.close()
    return results


async def _async_get_ns(redis_url: str, sample: list[str], repeat: int) -> float:
    client = aioredis.Redis.from_url(redis_url)
    try:
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter_ns()
            for key in sample:
                await client.get("revoked:" + key)
            best = min(best, (time.perf_counter_ns() - started) / len(sample))
        return best
    finally:
        await client.aclose()


def run_suite(*, quick: bool) -> dict[str, Any]:
    """The lookup benchmark as ``python -m bench`` runs it."""
    n = 10_000 if quick else 1_000_000
    repeat = 2 if quick else 3
    results = run(n, repeat)
    now = time.time()
    rng = random.Random(1)
    keys = [change.key for change in make_changes(n, now, rng)]
    hits = random.Random(3).sample(keys, min(REDIS_LOOKUPS, n))
    misses = [str(uuid.uuid4()) for _ in range(min(REDIS_LOOKUPS, n))]
    with (
        tempfile.TemporaryDirectory(prefix="revsync-bench-") as tmp,
        common.private_redis(Path(tmp)) as redis_url,
    ):
        results["redis_get"] = redis_get_ns(redis_url, keys, hits, misses, repeat)
    rs, tl, rg = results["revocation_set"], results["tlru_cache"], results["redis_get"]
    print(f"  {n:,} entries, best of {repeat}; loop alone {results['loop_ns']:.0f} ns")
    print(f"  {'':18}{'hit ns':>10}{'miss ns':>10}{'load s':>10}{'bytes/entry':>14}")
    for name, row in (("revocation_set", rs), ("tlru_cache", tl)):
        print(
            f"  {name:18}{row['hit_ns']:>10.0f}{row['miss_ns']:>10.0f}"
            f"{row['load_s']:>10.3f}{row['bytes_per_entry']:>14.0f}"
        )
    print(f"  {'redis GET':18}{rg['hit_ns']:>10.0f}{rg['miss_ns']:>10.0f}")
    print(f"  {'redis.asyncio GET':18}{rg['async_hit_ns']:>10.0f}{rg['async_miss_ns']:>10.0f}")
    return {
        "method": (
            f"{n:,} jti entries; ns per call, best of {repeat}, each lookup on a fresh "
            f"unhashed string, loop included; Redis: {REDIS_LOOKUPS:,} sequential GETs on "
            "loopback against the same keys; bytes per entry by tracemalloc"
        ),
        "entries": n,
        "repeat": repeat,
        **results,
    }
