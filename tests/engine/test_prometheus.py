"""revsync.prometheus on an in-process node: the agreed names, a defined value before
the first sync, and the store write histogram and failure counter."""

from __future__ import annotations

import sqlite3
import time
from urllib.parse import urlsplit

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from revsync import StoreError
from revsync.prometheus import registry_for
from tests.engine.conftest import NodeFactory, claims


def _values(registry: CollectorRegistry) -> dict[str, float]:
    values = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


async def test_defined_before_the_first_sync(make_node: NodeFactory, sqlite_url: str) -> None:
    node = await make_node(sqlite_url, start=False)
    values = _values(registry_for(node))
    # 0, not NaN: an alert on "time() - revsync_last_sync_timestamp_seconds" fires.
    assert values["revsync_last_sync_timestamp_seconds"] == 0
    assert values["revsync_ready"] == 0
    assert values["revsync_store_epoch"] == 0
    for counter in (
        "revsync_store_resets_total",
        "revsync_store_write_failures_total",
        "revsync_store_pruned_rows_total",
        "revsync_publish_failures_total",
        "revsync_resync_failures_total",
    ):
        assert values[counter] == 0, counter


async def test_store_writes_timed_and_failures_counted(
    make_node: NodeFactory, sqlite_url: str
) -> None:
    node = await make_node(sqlite_url)
    registry = registry_for(node)
    before = time.time()
    await node.revoke(claims())
    values = _values(registry)
    assert values["revsync_store_write_duration_seconds_count"] == 1
    assert values["revsync_store_write_failures_total"] == 0
    assert before - 5 < values["revsync_last_sync_timestamp_seconds"] <= time.time()
    assert values["revsync_store_epoch"] == 1
    assert values['revsync_entries{kind="jti"}'] == 1

    # The store refuses the next write (its table is gone): counted, and timed too.
    with sqlite3.connect(urlsplit(sqlite_url).path[1:]) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            db.execute(f"DROP TABLE {table}")
    with pytest.raises(StoreError):
        await node.revoke(claims())
    values = _values(registry)
    assert values["revsync_store_write_failures_total"] == 1
    assert values["revsync_store_write_duration_seconds_count"] == 2


async def test_the_backfill_is_reported_once_it_is_done(
    make_node: NodeFactory, sqlite_url: str
) -> None:
    writer = await make_node(sqlite_url)
    for _ in range(3):
        await writer.revoke(claims())
    node = await make_node(sqlite_url, start=False)
    registry = registry_for(node)
    assert "revsync_backfill_seconds" not in _values(registry)  # not backfilled yet
    await node.start()
    values = _values(registry)
    assert 0 < values["revsync_backfill_seconds"] < 30
    assert values["revsync_backfill_rows"] == 3
    assert node.status()["backfill"]["rows"] == 3
