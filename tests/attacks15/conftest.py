"""The issue-15 attack round's fixtures: the scale tests' real Sentinel and Cluster
topologies, in-process nodes and API node processes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from revsync import RevSync
from tests.engine.conftest import make_app, make_node
from tests.scale.conftest import cluster_setup, sentinel_setup
from tests.services.conftest import start_node

__all__ = ["Start", "cluster_setup", "make_node", "sentinel_setup", "start", "start_node"]

Start = Callable[..., Awaitable[RevSync]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """In-process nodes on one channel and one SQLite store, stopped after the test;
    the resync timer (30 s) too slow to carry what the bus must."""
    nodes: list[RevSync] = []
    channel = f"revsync-att-{uuid.uuid4().hex[:8]}"

    async def factory(url: str, **settings: Any) -> RevSync:
        node = RevSync(
            make_app(),
            redis_url=url,
            store_url=f"sqlite:///{tmp_path / 'revsync.db'}",
            channel=channel,
            heartbeat_interval=0.2,
            resync_interval=30,
            max_staleness=30,
            startup_timeout=20,
            **settings,
        )
        nodes.append(node)
        await node.start()
        return node

    yield factory
    for node in nodes:
        await node.stop()
