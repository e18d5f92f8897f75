"""The rolling-restart benchmark's store proxy counts what a node asks of its store.

Real Redis and real PostgreSQL behind the proxy: if the counters misread a protocol,
the per-restart figures of docs/benchmarks.md would be wrong without anyone noticing.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
import redis

from bench.store_proxy import StoreProxy


def test_redis_commands_are_counted_one_by_one_even_in_a_pipeline(redis_url: str) -> None:
    target = urlsplit(redis_url)
    with StoreProxy(target.hostname or "127.0.0.1", target.port or 6379, "redis") as proxy:
        client = redis.Redis(host="127.0.0.1", port=proxy.port)
        try:
            client.ping()
            proxy.take()  # the connection's own hand-shake commands
            client.set("revsync-proxy-test", "x" * 100_000)  # one command, many packets
            pipe = client.pipeline(transaction=False)
            for _ in range(3):
                pipe.get("revsync-proxy-test")
            pipe.execute()
            client.delete("revsync-proxy-test")
            counts = proxy.take()
        finally:
            client.close()
    assert counts.requests == 5
    assert counts.to_store > 100_000
    assert counts.from_store > 300_000  # three GETs of 100 kB each


async def test_postgres_queries_are_counted(postgres_url: str) -> None:
    target = urlsplit(postgres_url)
    with StoreProxy(target.hostname or "127.0.0.1", target.port or 5432, "postgres") as proxy:
        dsn = postgres_url.replace(target.netloc.rpartition("@")[2], f"127.0.0.1:{proxy.port}")
        conn = await asyncpg.connect(dsn + "?sslmode=disable", timeout=5)
        try:
            proxy.take()  # start-up and asyncpg's own type introspection
            await conn.fetch("SELECT generate_series(1, $1::int)", 1000)  # extended: Execute
            await conn.fetch("SELECT generate_series(1, $1::int)", 10)
            await conn.execute("SELECT 1")  # simple query
            counts = proxy.take()
        finally:
            await conn.close()
    assert counts.requests == 3
    assert counts.from_store > 1000 * 4
    assert counts.connections == 0  # counted when the connection was opened, before take()
