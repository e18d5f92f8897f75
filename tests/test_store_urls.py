"""Store URLs (the factory) and reaching the server: errors that say what to fix, promptly."""

from __future__ import annotations

import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from revsync.changes import ChangeRequest, Kind
from revsync.stores import Store, StoreError, store_from_url

REQUEST = ChangeRequest(Kind.JTI, "t", True, 2_000_000_000.0)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "revsync.db",
        "/var/lib/revsync.db",
        "mysql://db/revsync",
        "http://example.com",
        "sqlite:",
        "sqlite://",
        "sqlite:///",
        "sqlite://host/revsync.db",
        "sqlite:///revsync.db?mode=memory",
        "postgresql://db:notaport/revsync",
        "redis://cache:99999/0",
        "redis://cache/0?prefix={bad}",
    ],
)
def test_bad_url_raises_value_error_naming_the_key(url: str) -> None:
    with pytest.raises(ValueError, match="REVSYNC_STORE_URL") as info:
        store_from_url(url)
    assert "sqlite:///" in str(info.value)
    assert "postgresql://" in str(info.value)
    assert "redis://" in str(info.value)


def test_memory_sqlite_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="every node") as info:
        store_from_url("sqlite:///:memory:")
    assert "REVSYNC_STORE_URL" in str(info.value)


def test_error_names_the_given_config_key_and_hides_the_password() -> None:
    with pytest.raises(ValueError, match="MY_STORE") as info:
        store_from_url("mysql://user:hunter2@db/x", config_key="MY_STORE")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:///revsync.db", "revsync.db"), ("sqlite:///data/r.db", "data/r.db"),
     ("sqlite:////var/lib/r.db", "/var/lib/r.db"), ("sqlite:///my%20dir/r.db", "my dir/r.db")],
)  # fmt: skip
def test_sqlite_paths(url: str, path: str) -> None:
    store = store_from_url(url)
    assert isinstance(store, Store)
    assert store.path == path  # type: ignore[attr-defined]
    assert store.url == url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://revsync:hunter2@db:5432/revsync",
        "postgres://revsync:hunter2@db/revsync?search_path=x",
        "redis://:hunter2@cache:6379/0",
        "rediss://user:hunter2@cache/1?prefix=app",
    ],
)
def test_server_urls_build_stores_with_masked_password(url: str) -> None:
    store = store_from_url(url)
    assert isinstance(store, Store)
    assert "hunter2" not in store.url
    assert "***" in store.url


def test_redis_prefix_from_query_or_option() -> None:
    assert store_from_url("redis://cache/0").prefix == "revsync"  # type: ignore[attr-defined]
    assert store_from_url("redis://cache/0?prefix=app").prefix == "app"  # type: ignore[attr-defined]
    store = store_from_url("redis://cache/0?prefix=app", prefix="other")
    assert store.prefix == "other"  # type: ignore[attr-defined]


def test_missing_asyncpg_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    monkeypatch.delitem(sys.modules, "revsync.stores.postgres", raising=False)
    with pytest.raises(ImportError, match=r"pip install revsync\[postgres\]"):
        store_from_url("postgresql://db/revsync")


# --- reaching the server -------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener completes TCP handshakes and then never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


async def assert_connect_fails_fast(url: str, seconds: float = 5.0, **options: float) -> None:
    store = store_from_url(url, **options)
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot connect"):
        await store.connect()
    assert time.monotonic() - started < seconds
    with pytest.raises(StoreError, match="not connected"):
        await store.write(REQUEST)
    await store.close()


async def test_unreachable_postgres_raises_store_error_promptly() -> None:
    await assert_connect_fails_fast(f"postgresql://postgres@127.0.0.1:{closed_port()}/test")


async def test_unreachable_redis_raises_store_error_promptly() -> None:
    await assert_connect_fails_fast(f"redis://127.0.0.1:{closed_port()}/0")


async def test_silent_postgres_times_out(silent_port: int) -> None:
    url = f"postgresql://postgres@127.0.0.1:{silent_port}/test"
    await assert_connect_fails_fast(url, 4.0, connect_timeout=1.0)


async def test_silent_redis_times_out(silent_port: int) -> None:
    await assert_connect_fails_fast(f"redis://127.0.0.1:{silent_port}/0", 4.0, connect_timeout=1.0)


async def test_sqlite_in_missing_directory_raises_store_error(tmp_path: Path) -> None:
    store = store_from_url(f"sqlite:///{tmp_path / 'missing' / 'r.db'}")
    with pytest.raises(StoreError, match="cannot open"):
        await store.connect()
    await store.close()


async def test_redis_store_works_again_after_server_restart(redis_server: object) -> None:
    server = redis_server
    store = store_from_url(server.url)  # type: ignore[attr-defined]
    await store.connect()
    try:
        assert (await store.write(REQUEST)).seq == 1
        server.kill()  # type: ignore[attr-defined]
        started = time.monotonic()
        with pytest.raises(StoreError, match="failed") as info:
            await store.write(REQUEST)
        assert time.monotonic() - started < 5
        assert info.value.__cause__ is not None
        server.start()  # type: ignore[attr-defined]
        assert await store.head() == 0  # a fresh server without persistence
        assert (await store.write(REQUEST)).seq == 1
    finally:
        await store.close()


async def test_postgres_store_works_again_after_connections_drop(postgres_schema_url: str) -> None:
    name = f"revsync-test-{uuid.uuid4().hex[:8]}"
    store = store_from_url(f"{postgres_schema_url}&application_name={name}")
    await store.connect()
    admin = await asyncpg.connect(postgres_schema_url)
    try:
        await store.write(REQUEST)
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = $1",
            name,
        )
        assert killed >= 1
        try:
            head = await store.head()
        except StoreError:  # the pool may hand out the dead connection once
            head = await store.head()
        assert head == 1
        assert (await store.write(REQUEST)).seq == 2
    finally:
        await admin.close()
        await store.close()
