"""Revocation is the same whatever the token location: two in-process RevSync nodes.

Node A revokes; node B, sharing the store and the Redis channel, must refuse the
token whether it arrives in a header, a cookie (with its CSRF value), the query
string or a JSON body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestAppProtocol as Served

from revsync import RevSync
from revsync.jwt import create_access_token, decode_token, get_csrf_token
from tests.jwt.conftest import build_app

ALL = ["headers", "cookies", "query_string", "json"]
REVOKED = (401, {"msg": "Token has been revoked"})


@pytest.fixture
async def nodes(
    redis_url: str, sqlite_url: str, channel: str
) -> AsyncIterator[list[tuple[Quart, RevSync, Served]]]:
    started = []
    async with AsyncExitStack() as stack:
        for _ in range(2):
            app, _ = build_app(JWT_TOKEN_LOCATION=ALL, JWT_BLACKLIST_ENABLED=True)
            revsync = RevSync(
                app, store_url=sqlite_url, redis_url=redis_url, channel=channel, startup_timeout=10
            )
            test_app = await stack.enter_async_context(app.test_app())
            started.append((app, revsync, test_app))
        yield started


def ways(token: str, csrf: str) -> dict[str, dict[str, Any]]:
    """The request options carrying ``token`` in each location (POST: CSRF applies)."""
    return {
        "headers": {"headers": {"Authorization": f"Bearer {token}"}},
        "cookies": {"headers": {"Cookie": f"access_token_cookie={token}", "X-CSRF-TOKEN": csrf}},
        "query_string": {"query_string": {"jwt": token}},
        "json": {"json": {"access_token": token}},
    }


async def answers(test_app: Served, token: str, csrf: str) -> dict[str, tuple[int, Any]]:
    client = test_app.test_client()
    result = {}
    for location, options in ways(token, csrf).items():
        response = await client.post("/protected", **options)
        result[location] = (response.status_code, await response.get_json())
    return result


async def refused_everywhere(test_app: Served, token: str, csrf: str) -> None:
    deadline = time.monotonic() + 5
    while True:
        seen = await answers(test_app, token, csrf)
        if all(answer == REVOKED for answer in seen.values()):
            return
        assert all(status in (200, 401) for status, _ in seen.values()), seen
        if time.monotonic() > deadline:
            pytest.fail(f"still accepted after 5 s: {seen}")
        await asyncio.sleep(0.01)


async def test_revoked_token_is_refused_in_every_location_on_every_node(
    nodes: list[tuple[Quart, RevSync, Served]],
) -> None:
    (app_a, revsync_a, node_a), (_, _, node_b) = nodes
    async with app_a.app_context():
        token = create_access_token("alice")
        csrf = get_csrf_token(token)
        claims = decode_token(token)
    for node in (node_a, node_b):
        seen = await answers(node, token, csrf)
        assert {loc: status for loc, (status, _) in seen.items()} == dict.fromkeys(ALL, 200)
    await revsync_a.revoke(claims)
    for node in (node_a, node_b):
        await refused_everywhere(node, token, csrf)


async def test_log_out_everywhere_refuses_every_location_on_every_node(
    nodes: list[tuple[Quart, RevSync, Served]],
) -> None:
    (app_a, _, node_a), (_, revsync_b, node_b) = nodes
    async with app_a.app_context():
        token = create_access_token("bob")
        csrf = get_csrf_token(token)
    assert all(status == 200 for status, _ in (await answers(node_b, token, csrf)).values())
    await revsync_b.revoke_identity("bob")
    for node in (node_a, node_b):
        await refused_everywhere(node, token, csrf)
    # CSRF is still checked first: a revoked cookie without its CSRF value is a CSRF error.
    response = await node_a.test_client().post(
        "/protected", headers={"Cookie": f"access_token_cookie={token}"}
    )
    assert (response.status_code, await response.get_json()) == (
        401,
        {"msg": "Missing CSRF token"},
    )
