"""The ``store`` fixture: one connected store per backend, the same tests for each.

SQLite uses a file in the test's tmp_path, PostgreSQL a fresh schema of the test's
own, Redis a key prefix of the test's own on the shared server (deleted after).
``store_factory`` opens more store objects on the same data, as other nodes would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis

from revsync.stores import Store, store_from_url

BACKENDS = ["sqlite", "postgres", "redis"]

StoreFactory = Callable[[], Awaitable[Store]]


def backend_url(request: pytest.FixtureRequest, backend: str) -> str:
    """A URL of the test's own for ``backend``; the service fixtures skip when it is down."""
    if backend != "redis":
        fixture = "sqlite_url" if backend == "sqlite" else "postgres_schema_url"
        url: str = request.getfixturevalue(fixture)
        return url
    base: str = request.getfixturevalue("redis_url")
    prefix = f"revsync-test-{uuid.uuid4().hex[:12]}"
    request.addfinalizer(lambda: _delete_prefix(base, prefix))
    return f"{base}?prefix={prefix}"


def _delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{{{prefix}}}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.fixture
def store_url(request: pytest.FixtureRequest, backend: str) -> str:
    return backend_url(request, backend)


@pytest.fixture
async def store_factory(store_url: str) -> AsyncIterator[StoreFactory]:
    """Opens connected stores on the test's data; closes them all afterwards."""
    opened: list[Store] = []

    async def open_store() -> Store:
        store = store_from_url(store_url)
        await store.connect()
        opened.append(store)
        return store

    try:
        yield open_store
    finally:
        for store in opened:
            await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> Store:
    return await store_factory()
