"""RevSync wired into revsync.jwt, through Quart's test client."""

from __future__ import annotations

import asyncio

from quart import Quart

from revsync import RevSync
from revsync.jwt import create_access_token
from tests.engine.conftest import logout_app


def _app(sqlite_url: str, redis_url: str, channel: str) -> tuple[Quart, RevSync]:
    return logout_app(store_url=sqlite_url, redis_url=redis_url, channel=channel)


async def test_logout_refuses_the_token(sqlite_url: str, redis_url: str, channel: str) -> None:
    app, _ = _app(sqlite_url, redis_url, channel)
    async with app.test_app():
        client = app.test_client()
        async with app.app_context():
            token = create_access_token(identity="alice")
        headers = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/protected", headers=headers)).status_code == 200
        assert (await client.delete("/logout", headers=headers)).status_code == 200
        response = await client.get("/protected", headers=headers)
        assert response.status_code == 401
        assert (await response.get_json()) == {"msg": "Token has been revoked"}


async def test_login_right_after_logging_out_everywhere_works(
    sqlite_url: str, redis_url: str, channel: str
) -> None:
    """The cut-off refuses tokens issued before it, even within the same second,
    and never the ones issued after it."""
    app, revsync = _app(sqlite_url, redis_url, channel)
    async with app.test_app():
        client = app.test_client()
        for _ in range(5):
            async with app.app_context():
                before = create_access_token(identity="bob")
            await revsync.revoke_identity("bob")
            # iat has millisecond resolution: a token of the very same millisecond
            # as the cut-off is refused, so step past it.
            await asyncio.sleep(0.002)
            async with app.app_context():
                after = create_access_token(identity="bob")
            refused = await client.get("/protected", headers={"Authorization": f"Bearer {before}"})
            assert refused.status_code == 401
            accepted = await client.get("/protected", headers={"Authorization": f"Bearer {after}"})
            assert accepted.status_code == 200
