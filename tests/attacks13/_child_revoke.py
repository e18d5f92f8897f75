"""Another process on the same SQLite store with ``memory://``: revoke jtis, exit."""

from __future__ import annotations

import asyncio
import sys
import time

from quart import Quart

import revsync.testing


async def main(store_url: str, jtis: list[str]) -> None:
    app = Quart(__name__)
    app.config.update(JWT_SECRET_KEY="x" * 32, JWT_BLACKLIST_ENABLED=True)
    async with revsync.testing.running(app, store_url=store_url) as ext:
        for jti in jtis:
            await ext.revoke_jti(jti, expires_at=time.time() + 600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
