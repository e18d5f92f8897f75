"""PostgreSQL: a rotation and the family's revocation serialise on the family row.

In PostgreSQL several nodes write at once, so "reuse detection never misses a
concurrent rotation" rests on a row lock: the rotation holds its family's row from
its compare-and-set to its commit, and ``revoke_family`` marks that row before it
reads the members.  Each test stops one of the two inside its transaction on a real
lock the test holds (a trigger takes an advisory lock), starts the other, waits until
that one is blocked in the server (or finished, which would be the bug), then lets
the first go on.  No sleeps: the order is forced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from revsync.stores import Store

from .conftest import StoreFactory
from .test_registry_store import record, registry

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

HOLD = 0x7265_7673_7465_7374  # the advisory lock id the triggers wait for


@pytest.fixture
async def holder(store: Store, store_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own; the schema exists (``store`` created it)."""
    conn = await asyncpg.connect(store_url)
    try:
        yield conn
    finally:
        await conn.close()


async def hold_writes(conn: asyncpg.Connection, table: str, event: str, when: str) -> None:
    """Make a write to ``table`` matching ``when`` wait, inside its transaction, for the
    advisory lock HOLD (taken here until ``release``)."""
    await conn.execute(f"""
        CREATE FUNCTION revsync_test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock({HOLD});
            RETURN NEW;
        END $$;
        CREATE TRIGGER revsync_test_hold BEFORE {event} ON {table}
            FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION revsync_test_hold();
    """)
    await conn.execute("SELECT pg_advisory_lock($1)", HOLD)


async def release(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", HOLD)


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` (a bounded wait for the server, not a speed requirement)."""
    deadline = time.monotonic() + 10
    while not await check():
        assert time.monotonic() < deadline, f"never {what}"
        await asyncio.sleep(0.005)


async def waiting(conn: asyncpg.Connection, count: int) -> bool:
    """Whether ``count`` sessions wait behind ``conn``'s lock (the held one, then one
    waiting for it): counted through pg_blocking_pids from ``conn``'s own session, so
    other tests' waits in the same server (a parallel run) are not counted."""
    found: int = await conn.fetchval("""
        WITH RECURSIVE blocked(pid) AS (
            SELECT pid FROM pg_stat_activity
             WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))
            UNION
            SELECT a.pid FROM pg_stat_activity a
              JOIN blocked b ON b.pid = ANY(pg_blocking_pids(a.pid))
        )
        SELECT count(*) FROM blocked
    """)
    return found >= count


async def done_or_waiting(task: asyncio.Task[object], conn: asyncpg.Connection) -> bool:
    """Whether ``task`` finished (not waiting for the held one: the bug) or waits too."""
    return task.done() or await waiting(conn, 2)


async def test_revoke_family_waits_for_a_rotation_in_flight(
    store: Store, store_factory: StoreFactory, holder: asyncpg.Connection
) -> None:
    rotating, revoking = registry(store), registry(await store_factory())
    await rotating.register([record("r1", type="refresh", family="f")])
    # The rotation stops when it inserts its successor: past its compare-and-set.
    await hold_writes(holder, "revsync_tokens", "INSERT", "NEW.jti = 'r2'")
    rotation = asyncio.create_task(
        rotating.register([record("r2", type="refresh", family="f")], rotate="r1")
    )
    await until(lambda: waiting(holder, 1), "held the rotation")
    revocation = asyncio.create_task(revoking.revoke_family("f"))
    await until(lambda: done_or_waiting(revocation, holder), "blocked the revocation")
    await release(holder)
    members = await revocation
    assert await rotation is not None  # it was past its compare-and-set
    # The mark waited for the rotation, so the members read after it include r2.
    assert [m.jti for m in members] == ["r1", "r2"]


async def test_rotation_waits_for_a_family_being_revoked(
    store: Store, store_factory: StoreFactory, holder: asyncpg.Connection
) -> None:
    revoking, rotating = registry(store), registry(await store_factory())
    await revoking.register([record("r1", type="refresh", family="f")])
    # The revocation stops as it marks the family's row, holding that row.
    await hold_writes(holder, "revsync_families", "UPDATE", "NEW.revoked AND NOT OLD.revoked")
    revocation = asyncio.create_task(revoking.revoke_family("f"))
    await until(lambda: waiting(holder, 1), "held the revocation")
    rotation = asyncio.create_task(
        rotating.register([record("r2", type="refresh", family="f")], rotate="r1")
    )
    await until(lambda: done_or_waiting(rotation, holder), "blocked the rotation")
    await release(holder)
    assert [m.jti for m in await revocation] == ["r1"]
    # The rotation saw the mark once the revocation committed: nothing registered.
    assert await rotation is None
    assert await rotating.token("r2") is None
    assert not (await rotating.token("r1")).rotated
