"""The demo's cluster: Redis (found or started), a shared SQLite store, the resync job
and N API nodes, each process run by ``services.processes``."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from services.processes import (
    ROOT,
    Node,
    ProcessError,
    RedisServer,
    Unavailable,
    clean_env,
    free_port,
    redis_answers,
    run,
    start_ready,
)

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def pick_redis(environ: Mapping[str, str], workdir: Path) -> tuple[str, RedisServer | None, str]:
    """(url, process we started or None, how it was found)."""
    url = environ.get("REVSYNC_REDIS_URL")
    if url:
        if not redis_answers(url, 2.0):
            msg = f"REVSYNC_REDIS_URL={url} does not answer; start that Redis or unset the variable"
            raise ProcessError(msg)
        return url, None, "REVSYNC_REDIS_URL"
    if redis_answers(DEFAULT_REDIS, 0.5):
        return DEFAULT_REDIS, None, "the Redis at 127.0.0.1:6379"
    server = RedisServer(free_port(), workdir)
    try:
        server.start()
    except Unavailable as exc:
        msg = (
            f"no Redis: REVSYNC_REDIS_URL is not set, nothing answers at 127.0.0.1:6379, "
            f"and {exc} or set REVSYNC_REDIS_URL=redis://host:port/0"
        )
        raise ProcessError(msg) from None
    return server.url, server, f"a redis-server started on port {server.port}"


class Cluster:
    """Redis (found or started), a shared SQLite store, the resync job and N nodes."""

    def __init__(self, workdir: Path, nodes: int = 3, environ: Mapping[str, str] | None = None):
        self.workdir = workdir
        self.environ = dict(os.environ if environ is None else environ)
        self.redis_proc: RedisServer | None = None
        self.redis_url = ""
        self.redis_source = ""
        self.admin_token = secrets.token_urlsafe(24)
        self.count = nodes
        self.nodes: list[Node] = []
        self.store_url = f"sqlite:///{workdir / 'revsync.db'}"

    def env(self) -> dict[str, str]:
        return clean_env(
            self.environ,
            PYTHONPATH=str(ROOT),
            JWT_SECRET_KEY=secrets.token_hex(32),
            REVSYNC_REDIS_URL=self.redis_url,
            REVSYNC_STORE_URL=self.store_url,
            REVSYNC_CHANNEL=f"revsync-demo-{secrets.token_hex(4)}",
            REVSYNC_EVENT_KEY=secrets.token_hex(32),
            REVSYNC_ADMIN_TOKEN=self.admin_token,
        )

    def setup(self) -> None:
        """Find or start Redis; every other step is its own method so callers can print."""
        self.redis_url, self.redis_proc, self.redis_source = pick_redis(self.environ, self.workdir)
        self._env = self.env()

    def resync(self) -> str:
        result = run([sys.executable, "-m", "services.resync", "--wait", "5"], env=self._env)
        if result.returncode != 0:
            msg = f"the resync job failed ({result.returncode}): {result.stderr.strip()}"
            raise ProcessError(msg)
        return result.stdout

    def start_nodes(self) -> None:
        self.nodes = [Node(f"node{i}", self._env, self.workdir) for i in range(1, self.count + 1)]
        start_ready(self.nodes)

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.redis_proc is not None:
            self.redis_proc.stop()
            self.redis_proc = None
