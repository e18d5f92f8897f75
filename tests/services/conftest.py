"""Fixtures for the deployment tests: API nodes as real hypercorn processes."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.processes import API_APP, Node, clean_env, start_ready
from tests.conftest import POSTGRES_URL

SECRET = "s" * 40
ADMIN = "admin-token-for-tests-0123456789"
STORES = ["sqlite", "postgres", "redis"]

StartNode = Callable[..., Node]


def base_env(redis_url: str, store_url: str, **extra: str) -> dict[str, str]:
    settings = {
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
    return clean_env(**{**settings, **extra})


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
        # Not ready: up and answering, e.g. a node that cannot reach its store yet.
        node.wait_ready("/readyz" if ready else "/healthz")
        return node

    def cluster(self, env: dict[str, str], app: str = API_APP) -> list[Node]:
        """node1, node2 and node3, started side by side, each ready."""
        started = [Node(f"node{i}", env, self.logdir, app=app) for i in (1, 2, 3)]
        self.nodes.extend(started)
        start_ready(started)
        return started

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
