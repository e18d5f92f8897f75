"""Issue 5, item 1: random revocations on 3 nodes while Redis is killed and restarted.

Three in-process nodes share one SQLite store and a redis-server of the test's own
(node C reaches it through the suite's proxy with a 2 ms delay per chunk).  Writers
on every node revoke (and now and then unrevoke) random tokens at a steady pace
while Redis is killed with SIGKILL and restarted, losing everything it held.

An observer samples every node's decision for every revoked token every ~20 ms:
once a revocation has returned, no node may accept its token later than the
maximum staleness, and none may accept it again afterwards (unless it was
unrevoked).  At the end, every node's set must equal the store's unexpired set
within a few seconds of the last restart.

Bounded (CI): 2,000 revocations, 2 restarts.  REVSYNC_LONG_TESTS=1: 10,000 x 5.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

from revsync import RevSync
from revsync.changes import Kind
from revsync.stores import store_from_url
from tests.conftest import RedisServer
from tests.engine.conftest import NodeFactory, eventually

from .conftest import TcpProxy, ms, percentile, sized

MAX_STALENESS = 3.0
RESYNC = 1.0


class Token:
    __slots__ = ("claims", "jti", "revoked_at", "unrevoked")

    def __init__(self, exp: float) -> None:
        self.jti = str(uuid.uuid4())
        self.claims = {
            "jti": self.jti,
            "identity": "u",
            "iat": int(time.time()),
            "exp": int(exp),
            "type": "access",
        }
        self.revoked_at = 0.0
        self.unrevoked = False

    def expired(self) -> bool:
        """Past its exp (with a second to spare): the JWT layer refuses it by itself."""
        return float(self.claims["exp"]) <= time.time() + 1


async def test_no_revocation_lost_across_redis_restarts(
    make_node: NodeFactory,
    redis_server: RedisServer,
    proxy_factory: Any,
    sqlite_url: str,
    figures: dict[str, Any],
) -> None:
    total = sized(2_000, 10_000)
    restarts = sized(2, 5)
    duration = sized(8, 30)
    rng = random.Random(5)
    proxy: TcpProxy = await proxy_factory(redis_server.port)
    proxy.delay = 0.002
    common = {
        "heartbeat_interval": 0.2,
        "max_staleness": MAX_STALENESS,
        "resync_interval": RESYNC,
        "fail_mode": "closed",
    }
    nodes = [
        await make_node(sqlite_url, redis_url=redis_server.url, **common),
        await make_node(sqlite_url, redis_url=redis_server.url, **common),
        await make_node(sqlite_url, redis_url=proxy.url(), **common),
    ]
    tokens: list[Token] = []
    # (token index, node index) -> first time seen refused / in the set
    pending: set[tuple[int, int]] = set()
    refused_lag: list[float] = []
    set_lag: dict[tuple[int, int], float] = {}
    violations: list[str] = []
    done = asyncio.Event()
    unrevokes = 0
    last_restart_end = time.monotonic()
    stale_refusals = 0

    async def write(node: RevSync, count: int) -> None:
        nonlocal unrevokes
        pace = duration / count
        for _ in range(count):
            live = [t for t in tokens if t.revoked_at and not t.unrevoked]
            if live and rng.random() < 0.05:
                victim = rng.choice(live)
                victim.unrevoked = True  # from now on nobody owes a refusal
                await node.unrevoke(victim.jti)
                unrevokes += 1
            else:
                exp = time.time() + rng.choice((rng.uniform(4, 20), rng.uniform(600, 3600)))
                token = Token(exp)
                await node.revoke(token.claims)
                token.revoked_at = time.monotonic()
                tokens.append(token)
                index = len(tokens) - 1
                pending.update((index, n) for n in range(len(nodes)))
            await asyncio.sleep(rng.uniform(0, 2 * pace))

    async def restart_redis() -> None:
        nonlocal last_restart_end
        for _ in range(restarts):
            await asyncio.sleep(duration / (restarts + 1) * rng.uniform(0.6, 1.0))
            redis_server.kill()
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            await asyncio.to_thread(redis_server.start)
            last_restart_end = time.monotonic()

    async def observe() -> None:
        nonlocal stale_refusals
        sweep = 0
        while not done.is_set():
            now = time.monotonic()
            for pair in list(pending):
                index, n = pair
                token, node = tokens[index], nodes[n]
                if token.unrevoked or token.expired():
                    pending.discard(pair)
                    continue
                if pair not in set_lag and node.revocations.contains_jti(token.jti):
                    set_lag[pair] = now - token.revoked_at
                if node.is_revoked(token.claims):
                    if pair not in set_lag:
                        stale_refusals += 1
                    refused_lag.append(now - token.revoked_at)
                    pending.discard(pair)
                elif now - token.revoked_at > MAX_STALENESS:
                    violations.append(f"node {n} accepts {token.jti} {now - token.revoked_at:.2f}s")
                    pending.discard(pair)
            sweep += 1
            if sweep % 25 == 0:  # the refused stay refused
                for index, token in enumerate(tokens):
                    if token.revoked_at and not token.unrevoked and not token.expired():
                        for n, node in enumerate(nodes):
                            if (index, n) not in pending and not node.is_revoked(token.claims):
                                violations.append(f"node {n} forgot {token.jti}")
            await asyncio.sleep(0.02)

    observer = asyncio.create_task(observe())
    share = total // len(nodes)
    await asyncio.gather(
        restart_redis(),
        *(write(node, share + (i == 0) * (total % 3)) for i, node in enumerate(nodes)),
    )
    writes_done = time.monotonic()

    reader = store_from_url(sqlite_url)
    await reader.connect()
    rows = []
    seq = 0
    while page := await reader.since(seq, 10_000):
        rows += page
        seq = page[-1].seq
    await reader.close()
    now = time.time()
    truth = {r.key for r in rows if r.kind is Kind.JTI and r.revoked and r.expires_at > now}

    def converged() -> bool:
        horizon = time.time() + 1  # an entry a second from expiry may be pruned meanwhile
        return all(
            {k for k, e in n.revocations.snapshot_jtis().items() if e > horizon}
            == {k for k in truth if k_exp(k) > horizon}
            for n in nodes
        )

    exp_of = {t.jti: t.claims["exp"] for t in tokens}

    def k_exp(jti: str) -> float:
        return float(exp_of[jti])

    # Measured from the later of the last restart and the last write.
    quiet_since = max(last_restart_end, writes_done)
    await eventually(converged, within=5)
    converged_after = time.monotonic() - quiet_since
    # Let the observer finish every pending pair (each is settled within MAX_STALENESS).
    await eventually(lambda: not pending, within=MAX_STALENESS + 2)
    done.set()
    await observer
    assert not violations, violations[:10]
    assert sum(n.stats.reconnects for n in nodes) >= restarts * len(nodes)
    set_lags = list(set_lag.values())
    figures.update(
        revocations=len(tokens),
        unrevokes=unrevokes,
        redis_restarts=restarts,
        nodes=len(nodes),
        max_staleness_s=MAX_STALENESS,
        resync_interval_s=RESYNC,
        violations=len(violations),
        refused_after_ms_p50=ms(percentile(refused_lag, 0.5)),
        refused_after_ms_p99=ms(percentile(refused_lag, 0.99)),
        refused_after_ms_max=ms(max(refused_lag)),
        in_set_after_ms_p50=ms(percentile(set_lags, 0.5)),
        in_set_after_ms_p99=ms(percentile(set_lags, 0.99)),
        in_set_after_ms_max=ms(max(set_lags)),
        refused_while_stale_before_in_set=stale_refusals,
        converged_s_after_last_write_or_restart=round(converged_after, 2),
        publish_failures=sum(n.stats.publish_failures for n in nodes),
        reconnects=sum(n.stats.reconnects for n in nodes),
        resyncs=sum(n.stats.resyncs for n in nodes),
    )
