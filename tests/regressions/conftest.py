"""Regression tests for issue 12: shared fixtures and a store wrapper that can hold one
call on a gate (a delay injected at a real I/O point; the store underneath is real).

- ``make_node`` / ``store_url``: the engine fixtures (nodes in this process, each with
  its own store connection and Redis subscription).
- ``make_app_node``: like ``make_node`` but on an app the test built (app config such
  as ``JWT_*`` lifetimes, or a ``JWTManager`` attached).
- :class:`GatedStore`: delegates every store method to a real store; ``hold(...)``
  arms one call of one method (optionally for one key only) to wait on a gate before
  or after the real call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from quart import Quart

from revsync import RevSync
from revsync.changes import Change, ChangeRequest, Kind
from revsync.stores import store_from_url
from revsync.stores.base import Committed
from tests.engine.conftest import make_node, store_url  # noqa: F401 - fixtures used here

AppNodeFactory = Callable[..., Awaitable[RevSync]]


@pytest.fixture
async def make_app_node(redis_url: str, channel: str) -> AsyncIterator[AppNodeFactory]:
    """``await make_app_node(app, store_url=..., **settings)``: a started RevSync on ``app``."""
    nodes: list[RevSync] = []

    async def factory(app: Quart, *, start: bool = True, **settings: Any) -> RevSync:
        settings.setdefault("redis_url", redis_url)
        settings.setdefault("channel", channel)
        settings.setdefault("startup_timeout", 10)
        node = RevSync(app, **settings)
        nodes.append(node)
        if start:
            await node.start()
        return node

    yield factory
    for node in nodes:
        await node.stop()


@dataclass
class Hold:
    """One armed call: ``entered`` is set when the call reaches the gate; it then waits
    for ``gate``.  ``before``: wait before the real call, else after it returned."""

    key: str | None
    before: bool
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def reached(self, within: float = 5.0) -> None:
        """Wait (bounded) until the held call has reached the gate."""
        try:
            async with asyncio.timeout(within):
                await self.entered.wait()
        except TimeoutError:
            pytest.fail(f"the held store call was not made within {within}s")

    def release(self) -> None:
        self.gate.set()


class GatedStore:
    """A real store behind a thin delegating wrapper (test-only I/O delay injection)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.url = real.url
        self._holds: dict[str, Hold] = {}

    @classmethod
    def from_url(cls, url: str) -> GatedStore:
        return cls(store_from_url(url))

    def hold(self, method: str, *, key: str | None = None, before: bool = False) -> Hold:
        """Arm the next call of ``method`` (whose key is ``key``, if given) to wait."""
        hold = Hold(key, before)
        self._holds[method] = hold
        return hold

    async def _call(self, method: str, key: str | None, call: Callable[[], Awaitable[Any]]) -> Any:
        hold = self._holds.get(method)
        if hold is not None and hold.key is not None and hold.key != key:
            hold = None
        if hold is not None:
            del self._holds[method]
            if hold.before:
                hold.entered.set()
                await hold.gate.wait()
        result = await call()
        if hold is not None and not hold.before:
            hold.entered.set()
            await hold.gate.wait()
        return result

    def __getattr__(self, name: str) -> Any:
        # Any other store method (position, new_epoch, revoke_family...) goes straight
        # to the real store.
        return getattr(self.real, name)

    # -- the Store protocol, delegated ------------------------------------------------

    async def connect(self) -> None:
        await self.real.connect()

    async def close(self) -> None:
        await self.real.close()

    async def write(self, request: ChangeRequest) -> Change:
        result: Change = await self._call("write", request.key, lambda: self.real.write(request))
        return result

    async def write_many(
        self, requests: Sequence[ChangeRequest], *, on_commit: Committed | None = None
    ) -> list[Change]:
        key = requests[0].key if requests else None
        result: list[Change] = await self._call(
            "write_many", key, lambda: self.real.write_many(requests, on_commit=on_commit)
        )
        return result

    async def get(self, kind: Kind, key: str) -> Change | None:
        result: Change | None = await self._call("get", key, lambda: self.real.get(kind, key))
        return result

    async def since(self, seq: int, limit: int = 10_000) -> list[Change]:
        result: list[Change] = await self._call("since", None, lambda: self.real.since(seq, limit))
        return result

    async def head(self) -> int:
        result: int = await self.real.head()
        return result

    async def prune(self, before: float) -> int:
        result: int = await self.real.prune(before)
        return result

    async def by_identity(self, identity: str) -> list[Change]:
        result: list[Change] = await self.real.by_identity(identity)
        return result

    async def check(self) -> dict[str, int]:
        result: dict[str, int] = await self.real.check()
        return result

    # -- the token registry's methods (REVSYNC_TRACK_TOKENS) -------------------------------

    async def register(self, records: Sequence[Any], *, rotate: str | None = None) -> Any:
        return await self.real.register(records, rotate=rotate)

    async def token(self, jti: str) -> Any:
        return await self.real.token(jti)

    async def tokens(self, *, identity: str | None = None, family: str | None = None) -> Any:
        return await self.real.tokens(identity=identity, family=family)


async def settle(probe: Callable[[], bool], within: float = 3.0) -> bool:
    """Poll ``probe`` until it holds or ``within`` passes; never fails (returns the result)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not probe():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True
