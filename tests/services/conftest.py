"""Fixtures for the deployment tests: API nodes as real hypercorn processes."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.demo.cluster import Node
from tests.conftest import POSTGRES_URL

SECRET = "s" * 40
ADMIN = "admin-token-for-tests-0123456789"
STORES = ["sqlite", "postgres", "redis"]

StartNode = Callable[..., Node]


def base_env(redis_url: str, store_url: str, **extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVSYNC_", "JWT_"))}
    env.update(
        {
            "JWT_SECRET_KEY": SECRET,
            "REVSYNC_ADMIN_TOKEN": ADMIN,
            "REVSYNC_REDIS_URL": redis_url,
            "REVSYNC_STORE_URL": store_url,
            "REVSYNC_CHANNEL": f"revsync-test-{uuid.uuid4().hex[:12]}",
            "REVSYNC_EVENT_KEY": secrets.token_hex(16),
            "REVSYNC_HEARTBEAT_INTERVAL": "0.2",
            "REVSYNC_RESYNC_INTERVAL": "1",
            "REVSYNC_MAX_STALENESS": "5",
        }
    )
    env.update(extra)
    return env


def wait_alive(node: Node, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert node.proc is not None
        assert node.proc.poll() is None, node.log_tail()
        try:
            if httpx.get(f"{node.url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    pytest.fail(f"{node.name} never answered /healthz\n{node.log_tail()}")


class NodeFactory:
    """Starts nodes and stops every one of them at teardown."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.nodes: list[Node] = []

    def __call__(
        self,
        env: dict[str, str],
        *,
        name: str | None = None,
        ready: bool = True,
        port: int | None = None,
    ) -> Node:
        node = Node(name or f"node{len(self.nodes) + 1}", env, self.logdir, port=port)
        self.nodes.append(node)
        node.start()
        if ready:
            node.wait_ready()
        else:
            wait_alive(node)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[NodeFactory]:
    factory = NodeFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop()


def _pg_schema(action: str, schema: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            if action == "create":
                await conn.execute(f'CREATE SCHEMA "{schema}"')
            else:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="module")
def store_url_for(request: pytest.FixtureRequest) -> Iterator[Callable[[str], str]]:
    """A function: store name -> URL of a fresh, empty store of that kind (sync, module-wide)."""
    schemas: list[str] = []
    tmp = request.getfixturevalue("tmp_path_factory").mktemp("stores")

    def make(kind: str) -> str:
        tag = uuid.uuid4().hex[:12]
        if kind == "sqlite":
            return f"sqlite:///{tmp / f'{tag}.db'}"
        if kind == "postgres":
            request.getfixturevalue("postgres_url")
            schema = f"t_{tag}"
            _pg_schema("create", schema)
            schemas.append(schema)
            sep = "&" if "?" in POSTGRES_URL else "?"
            return f"{POSTGRES_URL}{sep}search_path={schema}"
        if kind == "redis":
            url: str = request.getfixturevalue("redis_url")
            return f"{url}?prefix=revsync-test-{tag}"
        raise ValueError(kind)

    try:
        yield make
    finally:
        for schema in schemas:
            _pg_schema("drop", schema)


def login(node: Node, client: httpx.Client | None = None) -> dict[str, str]:
    http = client or httpx.Client(timeout=5)
    resp = http.post(f"{node.url}/login", json={"username": "test", "password": "test"})
    assert resp.status_code == 200, resp.text
    tokens: dict[str, str] = resp.json()
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
