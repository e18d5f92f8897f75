"""Benchmark the local revocation set against cachetools' TLRUCache.

Measures, for N revoked jtis (uuid4 strings, as the JWT layer issues):

- lookup ns per ``is_revoked`` call, for a revoked jti (hit) and another (miss);
  each jti is a fresh string whose hash is not cached yet, as one decoded from a
  token is, and the loop's own cost is included (shown as "loop" alone);
- seconds to load N pre-built Changes (a start-up snapshot), best of several runs;
- bytes per entry, measured with tracemalloc, key strings and expiries included.

Usage: ``python bench/bench_revocation_set.py [--quick] [--n N]``.  Prints a table and
writes bench/results/revocation_set.json (revocation_set.quick.json for fewer than
1,000,000 entries).  Timings on a shared machine are noisy;
each figure is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cachetools import TLRUCache

from revsync.changes import Change, Kind
from revsync.revocation_set import RevocationSet

RESULTS = Path(__file__).resolve().parent / "results" / "revocation_set.json"
QUICK_RESULTS = RESULTS.with_suffix(".quick.json")  # so a quick run never replaces a full one
LOOKUPS = 100_000
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 entries instead of 1,000,000")
    parser.add_argument("--n", type=int, help="number of entries (overrides --quick)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; the best counts")
    parser.add_argument("--output", type=Path, help="where to write the JSON")
    args = parser.parse_args()
    n = args.n or (10_000 if args.quick else 1_000_000)
    output = args.output or (QUICK_RESULTS if n < 1_000_000 else RESULTS)

    results = run(n, args.repeat)
    report = {
        "entries": n,
        "repeat": args.repeat,
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **results,
    }
    print(f"{n:,} entries, best of {args.repeat}; loop alone {results['loop_ns']:.0f} ns")
    print(f"{'':16}{'hit ns':>10}{'miss ns':>10}{'load s':>10}{'bytes/entry':>14}")
    for name in ("revocation_set", "tlru_cache"):
        row = results[name]
        print(
            f"{name:16}{row['hit_ns']:>10.0f}{row['miss_ns']:>10.0f}"
            f"{row['load_s']:>10.3f}{row['bytes_per_entry']:>14.0f}"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
