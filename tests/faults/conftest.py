"""Fault injection for the reliability suite: a TCP proxy of our own, the long/bounded
switch, and the figures each test reports.

- ``LONG`` is true with ``REVSYNC_LONG_TESTS=1``: the issue's full sizes (10,000
  revocations x 5 Redis restarts, 500 state-machine examples, 1,000 start-up trials).
  Unset, every test runs a bounded form sized for CI.
- :class:`TcpProxy` sits between a node and Redis (or PostgreSQL) on loopback and can
  stall (stop moving bytes, connections stay open: a half-open link), cut (abort every
  connection), refuse new connections, and delay every chunk.
- ``figures`` records what a test measured; at the end of the session the figures are
  merged into ``bench/results/faults.json`` under ``"bounded"`` or ``"long"`` and
  printed (``-s`` shows them), so docs/reliability.md can quote them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import make_node, store_url  # noqa: F401 - fixtures used here
from tests.services.conftest import start_node  # noqa: F401 - the API node process fixture

LONG = os.environ.get("REVSYNC_LONG_TESTS") == "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long forms run for many minutes: lift the suite's per-test time limit."""
    if LONG:
        for item in items:
            if item.path.is_relative_to(Path(__file__).parent):
                item.add_marker(pytest.mark.timeout(3600))


MODE = "long" if LONG else "bounded"
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "faults.json"

_FIGURES: dict[str, dict[str, Any]] = {}


def sized(bounded: int, long: int) -> int:
    """The bounded size in CI, the issue's full size with REVSYNC_LONG_TESTS=1."""
    return long if LONG else bounded


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the test fills with what it measured (kept only if the test passed)."""
    measured: dict[str, Any] = {}
    yield measured
    report = getattr(request.node, "rep_call", None)
    if measured and report is not None and report.passed:
        _FIGURES[request.node.name] = measured
        print(f"\n[faults] {request.node.name}: {json.dumps(measured, sort_keys=True)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


@pytest.fixture(scope="session", autouse=True)
def _write_figures() -> Iterator[None]:
    yield
    if not _FIGURES:
        return
    try:
        existing = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        existing = {}
    section = existing.setdefault(MODE, {})
    section.update(_FIGURES)
    section["_machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")


class TcpProxy:
    """A loopback TCP proxy that can stall, cut, refuse and delay, for fault injection.

    Every accepted connection gets its own upstream connection and two pumps.  A
    stalled pump stops *reading*, so the kernel buffers fill and the peers see a
    silent, open connection, exactly like a hung server or a dead NAT entry.
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.delay = 0.0
        self.accepted = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._holes: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, scheme: str = "redis", path: str = "/0") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stall(self) -> None:
        """Stop moving bytes both ways; connections stay open and silent."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def blackhole(self) -> None:
        """Silence the connections open now, for good; new ones flow normally.

        What a half-open TCP connection looks like after a NAT or load-balancer
        entry expires: nothing arrives, nothing fails, and only a new connection works.
        """
        self._holes |= self._links

    def cut(self) -> None:
        """Abort every open connection (both sides see a reset)."""
        for client, upstream in list(self._links):
            client.transport.abort()
            upstream.transport.abort()
        self._links.clear()

    def refuse(self, refusing: bool = True) -> None:
        """While refusing, new connections are closed as soon as they are accepted."""
        self._refusing = refusing

    @property
    def connections(self) -> int:
        return len(self._links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        link = (writer, up_writer)
        self._links.add(link)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst, link))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await src.read(65536)
                if not data:
                    break
                await self._flowing.wait()
                if link in self._holes:
                    continue  # swallowed
                if self.delay:
                    await asyncio.sleep(self.delay)
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._links.discard(link)
            self._holes.discard(link)
            for side in link:
                with contextlib.suppress(Exception):
                    side.transport.abort()


async def start_proxy(upstream_port: int) -> TcpProxy:
    proxy = TcpProxy(upstream_port)
    await proxy.start()
    return proxy


@pytest.fixture
async def proxy_factory() -> AsyncIterator[Any]:
    """``await proxy_factory(port)``: a started proxy to 127.0.0.1:port, closed at teardown."""
    proxies: list[TcpProxy] = []

    async def make(port: int) -> TcpProxy:
        proxy = await start_proxy(port)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        await proxy.close()


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` by nearest rank; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
