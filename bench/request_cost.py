"""1. Request cost: GET /protected under wrk, every variant in one run, interleaved.

Variants, each one hypercorn worker on loopback, started together and loaded in
turn, round after round (a b c d e a b c d e ...):

- revsync: the api node (services/api) with N revoked tokens in its set (SQLite store);
- no_check: the same app with JWT_BLACKLIST_ENABLED off (no revocation check);
- redis_get: revsync.jwt + one redis.asyncio GET per request (bench/apps/redis_get.py);
- qje_seed: quart-jwt-extended 0.1.0 running the seed program unchanged (own venv);
- revsync_nocache: the api node with revsync.jwt's verified-token cache off.

Figures are medians over rounds; ratios are of those medians, all from one run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from bench import common, loadgen, qje
from services.processes import Server, running

TARGETS = {"revsync/no_check": 0.97, "revsync/redis_get": 1.25, "revsync/qje_seed": 1.3}


def _token(url: str) -> str:
    resp = httpx.post(url + "/login", json={"username": "test", "password": "test"}, timeout=5)
    resp.raise_for_status()
    token: str = resp.json()["access_token"]
    check = httpx.get(url + "/protected", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    if check.status_code != 200:
        msg = f"{url}/protected answered {check.status_code}: {check.text[:200]}"
        raise RuntimeError(msg)
    return token


def run(*, quick: bool) -> dict[str, Any]:
    revoked = 1_000 if quick else 10_000
    seconds = 1.0 if quick else 5.0
    rounds = 1 if quick else 3
    connections = 16
    gen = loadgen.generator()
    if gen != "wrk":
        print(loadgen.WARNING)
    with tempfile.TemporaryDirectory(prefix="revsync-bench-") as tmp:
        work = Path(tmp)
        with common.private_redis(work) as redis_url:
            db = work / "revsync.db"
            common.sqlite_populate(db, revoked)
            client = redis.Redis.from_url(redis_url)
            with client.pipeline(transaction=False) as pipe:
                for i in range(revoked):
                    pipe.set(f"revoked:{common.jti_of(i)}", "1", ex=86_400)
                pipe.execute()
            client.close()
            env = common.node_env(redis_url, f"sqlite:///{db}", common.channel())
            variants: dict[str, Server] = {
                "revsync": Server("revsync", "services.api.app:app", env, work),
                "no_check": Server("no_check", "bench.apps.no_revocation:app", env, work),
                "redis_get": Server(
                    "redis_get",
                    "bench.apps.redis_get:app",
                    common.base_env(JWT_SECRET_KEY=common.SECRET, BENCH_REDIS_URL=redis_url),
                    work,
                ),
            }
            notes: dict[str, str] = {}
            qje_versions: dict[str, str] | None = None
            try:
                qje_python = qje.python()
                qje_versions = qje.versions(qje_python)
                variants["qje_seed"] = Server(
                    "qje_seed",
                    "bench.apps.qje_seed:app",
                    common.base_env(BENCH_BLACKLIST_SIZE=str(revoked)),
                    work,
                    python=qje_python,
                )
            except RuntimeError as exc:
                notes["qje_seed"] = f"not run: {exc}"
                print(f"quart-jwt-extended 0.1.0: {notes['qje_seed']}")
            variants["revsync_nocache"] = Server(
                "revsync_nocache", "bench.apps.api_node_nocache:app", env, work
            )
            with running(*variants.values()):
                for name, server in variants.items():
                    if name in ("redis_get", "qje_seed"):
                        server.wait_ready("/protected", common.READY_TIMEOUT, any_answer=True)
                    else:
                        server.wait_ready(timeout=common.READY_TIMEOUT)
                tokens = {name: _token(server.url) for name, server in variants.items()}
                refused = httpx.get(
                    variants["revsync"].url + "/protected",
                    headers={"Authorization": f"Bearer {common.mint(common.jti_of(0))}"},
                    timeout=5,
                ).status_code
                if refused != 401:
                    msg = f"revsync node accepted a revoked token ({refused})"
                    raise RuntimeError(msg)
                for name, server in variants.items():  # warm-up, not recorded
                    loadgen.run(
                        server.url + "/protected",
                        {"Authorization": f"Bearer {tokens[name]}"},
                        1.0,
                        connections,
                    )
                samples: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
                for r in range(rounds):
                    for name, server in variants.items():
                        result = loadgen.run(
                            server.url + "/protected",
                            {"Authorization": f"Bearer {tokens[name]}"},
                            seconds,
                            connections,
                        )
                        samples[name].append(result)
                        print(
                            f"  round {r + 1}/{rounds} {name:16} {result['rps']:8.0f} req/s"
                            f"  p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
                            f"  errors {result['errors']}"
                        )
    summary = {
        name: {
            key: statistics.median(s[key] for s in runs)
            for key in ("rps", "p50_ms", "p99_ms", "max_ms")
        }
        | {"errors": sum(s["errors"] for s in runs)}
        for name, runs in samples.items()
    }
    ratios = {}
    for pair, target in TARGETS.items():
        a, b = pair.split("/")
        if a in summary and b in summary:
            ratio = summary[a]["rps"] / summary[b]["rps"]
            ratios[pair] = {"ratio": ratio, "target": target, "met": ratio >= target}
        else:
            ratios[pair] = {"ratio": None, "target": target, "met": None}
    if "revsync_nocache" in summary:
        ratios["revsync/revsync_nocache"] = {
            "ratio": summary["revsync"]["rps"] / summary["revsync_nocache"]["rps"],
            "target": None,
            "met": None,
        }
    return {
        "method": (
            f"GET /protected with a valid token; each variant one hypercorn worker on loopback; "
            f"{gen} -t1 -c{connections}, {seconds:g} s per sample, {rounds} interleaved round(s) "
            f"after a 1 s warm-up each; medians over rounds; revsync's set holds "
            f"{revoked:,} revoked jtis, the seed's blacklist and Redis as many"
        ),
        "load_generator": gen,
        "revoked_entries": revoked,
        "seconds_per_sample": seconds,
        "rounds": rounds,
        "connections": connections,
        "samples": samples,
        "summary": summary,
        "ratios": ratios,
        "notes": notes,
        "qje_versions": qje_versions,
        "finished_at": time.time(),
    }
