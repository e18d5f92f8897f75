"""docs/security.md's least-privilege PostgreSQL roles, on the real test server: the
owner role creates the schema (``create_schema``, what ``revsync migrate`` runs), and a
node role with nothing but SELECT, INSERT, UPDATE and DELETE on revsync's tables runs
real nodes: registry writes, revocations, start-up catch-up and pruning all work, and
the role can create or drop nothing."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from revsync.stores import StoreError, store_from_url
from revsync.stores._layout import TABLES
from tests.conftest import ROOT
from tests.services.conftest import NodeFactory, base_env, bearer

DOC = ROOT / "docs" / "security.md"


def doc_statements() -> tuple[str, str]:
    """The section on PostgreSQL roles, and its SQL block (the set-up a superuser runs)."""
    text = DOC.read_text()
    section = text.split("## Least-privilege PostgreSQL roles", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sql\n(.*?)```", section, re.DOTALL)
    assert match is not None, "docs/security.md has no SQL block for the PostgreSQL roles"
    return section, match.group(1)


@dataclass(frozen=True)
class Roles:
    schema: str
    owner_url: str
    node_url: str
    node_dsn: str
    """The node role's URL without search_path, for asyncpg.connect."""


def _url_as(admin_url: str, role: str, schema: str | None) -> str:
    parts = urlsplit(admin_url)
    host = parts.netloc.rpartition("@")[2]
    query = f"search_path={schema}" if schema else ""
    return urlunsplit(parts._replace(netloc=f"{role}@{host}", query=query))


@pytest.fixture
async def roles(postgres_url: str) -> AsyncIterator[Roles]:
    """A schema, an owner role and a node role of this test's own, set up with the SQL
    of docs/security.md (names made unique), dropped afterwards."""
    tag = uuid.uuid4().hex[:10]
    schema, owner, node = f"lp_{tag}", f"revsync_owner_{tag}", f"revsync_node_{tag}"
    _, sql = doc_statements()
    sql = re.sub(r"\brevsync_owner\b", owner, sql)
    sql = re.sub(r"\brevsync_node\b", node, sql)
    sql = re.sub(r"\brevsync\b", schema, sql)
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(sql)
        yield Roles(
            schema,
            _url_as(postgres_url, owner, schema),
            _url_as(postgres_url, node, schema),
            _url_as(postgres_url, node, None),
        )
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        for role in (node, owner):
            await admin.execute(f'DROP OWNED BY "{role}"')
            await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()


def test_the_doc_names_every_table() -> None:
    section, _ = doc_statements()
    for table in TABLES:
        assert f"`{table}`" in section, f"docs/security.md does not name {table}"
    assert "six tables" in section
    assert len(TABLES) == 6


async def test_the_node_role_cannot_create_the_schema_and_is_told_what_to_run(
    roles: Roles,
) -> None:
    store = store_from_url(roles.node_url)
    with pytest.raises(StoreError) as refused:
        await store.connect()
    message = str(refused.value)
    assert "revsync migrate" in message
    assert "revsync_meta" in message
    assert "permission denied" in message
    with pytest.raises(StoreError, match="permission denied"):
        await store.create_schema()
    await store.close()


async def test_the_node_role_runs_no_ddl_and_can_create_or_drop_nothing(roles: Roles) -> None:
    owner = store_from_url(roles.owner_url)
    await owner.create_schema()  # not connected: a connection of its own
    await owner.create_schema()  # idempotent
    node = store_from_url(roles.node_url)
    await node.connect()  # the schema is there: no DDL, so no CREATE needed
    position = await node.position()
    assert position.head == 0
    with pytest.raises(StoreError, match="permission denied"):
        await node.create_schema()
    await node.close()
    await owner.close()

    conn = await asyncpg.connect(roles.node_dsn)
    try:
        s = roles.schema
        for statement in (
            f"CREATE TABLE {s}.evil (x int)",
            f"CREATE TABLE public.evil_{s} (x int)",
            f"DROP TABLE {s}.revsync_changes",
            f"TRUNCATE {s}.revsync_changes",
            f"ALTER TABLE {s}.revsync_meta ADD COLUMN evil int",
            f"CREATE INDEX evil ON {s}.revsync_changes (key)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()


def test_real_nodes_run_with_the_node_role(
    roles: Roles, redis_url: str, start_node: NodeFactory
) -> None:
    asyncio.run(store_from_url(roles.owner_url).create_schema())
    env = base_env(redis_url, roles.node_url, REVSYNC_TRACK_TOKENS="true")
    a = start_node(env)
    http = httpx.Client(timeout=5)
    # A registry write (login records both tokens), then a revocation.
    resp = http.post(f"{a.url}/login", json={"username": "test", "password": "test"})
    assert resp.status_code == 200, resp.text
    tokens = resp.json()
    access = bearer(tokens["access_token"])
    assert http.get(f"{a.url}/protected", headers=access).status_code == 200
    resp = http.post(
        f"{a.url}/refresh", headers=bearer(tokens["refresh_token"])
    )  # registry: a rotation-free refresh records the new access token
    assert resp.status_code == 200, resp.text
    assert http.delete(f"{a.url}/logout", headers=access).status_code == 200
    assert http.get(f"{a.url}/protected", headers=access).status_code == 401

    # A node started afterwards catches up from the store with the same role.
    b = start_node(env)
    assert http.get(f"{b.url}/protected", headers=access).status_code == 401
    sessions = http.get(f"{b.url}/sessions", headers=bearer(resp.json()["access_token"]))
    assert sessions.status_code == 200, sessions.text
    http.close()

    # The start-up job (connect, prune, check) with the node role.
    job = subprocess.run(
        [sys.executable, "-m", "services.resync", "--wait", "5"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert job.returncode == 0, job.stdout + job.stderr
    assert "live rows" in job.stdout
