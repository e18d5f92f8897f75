"""A byte- and request-counting TCP proxy between one node and its store.

The rolling-restart benchmark gives every node its own proxy, so what one restart
costs the store is read off that node's proxy: bytes each way and requests sent
(PostgreSQL: simple-query and Execute messages of the wire protocol; Redis: RESP
commands, a pipeline counting each of its commands).  It runs on its own event loop
in a thread, so the benchmark's blocking code can start and stop nodes meanwhile.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

_SSL_REQUEST = 80877103  # PostgreSQL's SSLRequest / GSSENCRequest codes: no type byte
_GSS_REQUEST = 80877104


@dataclass
class Counts:
    """What passed through a proxy since it was last reset."""

    to_store: int = 0
    from_store: int = 0
    requests: int = 0
    connections: int = 0


class _PgRequests:
    """Counts 'Q' (simple query) and 'E' (Execute) messages in a client's stream.

    The stream starts with untyped messages (SSLRequest, startup); every later message
    is a type byte and a big-endian int32 length that counts itself but not the type.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._untyped = True

    def feed(self, data: bytes) -> int:
        self._buf += data
        found = 0
        while True:
            if self._untyped:
                if len(self._buf) < 8:
                    return found
                length, code = struct.unpack_from("!ii", self._buf)
                if len(self._buf) < length:
                    return found
                del self._buf[:length]
                # After an SSL/GSS request the startup message follows, still untyped.
                self._untyped = code in (_SSL_REQUEST, _GSS_REQUEST)
                continue
            if len(self._buf) < 5:
                return found
            (length,) = struct.unpack_from("!i", self._buf, 1)
            if len(self._buf) < 1 + length:
                return found
            found += self._buf[0] in (ord("Q"), ord("E"))
            del self._buf[: 1 + length]


class _RedisRequests:
    """Counts RESP commands (``*<n>`` arrays of ``$<len>`` bulk strings) in a stream."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> int:
        self._buf += data
        found = 0
        while True:
            end = self._command_end()
            if end is None:
                return found
            found += 1
            del self._buf[:end]

    def _command_end(self) -> int | None:
        buf = self._buf
        line = buf.find(b"\r\n")
        if line < 0:
            return None
        if buf[:1] != b"*":  # an inline command: one line
            return line + 2
        pos = line + 2
        for _ in range(int(buf[1:line])):
            head = buf.find(b"\r\n", pos)
            if head < 0:
                return None
            pos = head + 2 + int(buf[pos + 1 : head]) + 2
            if pos > len(buf):
                return None
        return pos


def proxied_url(store: str, proxy_port: int, base: str) -> str:
    """``base`` (a postgresql:// or redis:// store URL) pointed at a proxy on loopback."""
    parts = urlsplit(base)
    netloc = parts.netloc.rpartition("@")
    host = f"127.0.0.1:{proxy_port}"
    netloc_out = f"{netloc[0]}@{host}" if netloc[1] else host
    query = parts.query
    if store == "postgres":  # no TLS, so the proxy can read the protocol
        query = "&".join(q for q in (query, "sslmode=disable") if q)
    return parts._replace(netloc=netloc_out, query=query).geturl()


class StoreProxy:
    """Listens on a free loopback port and forwards every connection to ``target``."""

    def __init__(self, target_host: str, target_port: int, protocol: str) -> None:
        if protocol not in ("postgres", "redis"):
            raise ValueError(f"no request counter for {protocol!r}")
        self.target = (target_host, target_port)
        self.protocol = protocol
        self.counts = Counts()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def __enter__(self) -> StoreProxy:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the store proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def take(self) -> Counts:
        """The counts so far, and start counting afresh (read on the proxy's loop)."""

        async def swap() -> Counts:
            counts, self.counts = self.counts, Counts()
            return counts

        return asyncio.run_coroutine_threadsafe(swap(), self._loop).result(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()
        # Stopped: end every connection's pipes here, on this loop, so none is left
        # to be collected later against a closed loop.
        self._server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        counter = _PgRequests() if self.protocol == "postgres" else _RedisRequests()
        await asyncio.gather(
            self._pipe(reader, up_writer, counter),
            self._pipe(up_reader, writer, None),
            return_exceptions=True,
        )

    async def _pipe(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        counter: _PgRequests | _RedisRequests | None,
    ) -> None:
        try:
            while data := await src.read(1 << 16):
                if counter is None:
                    self.counts.from_store += len(data)
                else:
                    self.counts.to_store += len(data)
                    self.counts.requests += counter.feed(data)
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()
