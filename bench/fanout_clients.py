"""The cheap clients of the fan-out benchmark: raw-socket subscribers and a PING prober.

A revsync node is a whole Python web server; hundreds of them do not fit on this
machine.  What Redis sees of a node on the bus is one connection SUBSCRIBEd to the
channel, so a subscriber here is just that: a socket that sent SUBSCRIBE and reads
the RESP messages Redis pushes.  One process holds many of them and reads them all
with one epoll loop, timestamping each read; the lag of a message is that time
minus the ``ts`` the publisher stamped into it (both from the same machine's clock).

Both run in child processes driven over a ``multiprocessing`` pipe, so they are
functions of plain arguments and import nothing heavy.
"""

from __future__ import annotations

import re
import selectors
import socket
import time
from multiprocessing.connection import Connection

_TS = re.compile(rb'"ts":([0-9.eE+-]+)')
"""The publisher's send time inside a revsync event (docs/events.md)."""


def command(*parts: bytes) -> bytes:
    """One RESP command: an array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def _array_at(buf: bytearray, pos: int) -> tuple[list[bytes | int], int] | None:
    """The RESP array starting at ``pos`` (bulk strings and integers) and where it
    ends, or None while it is incomplete."""
    line = buf.find(b"\r\n", pos)
    if line < 0:
        return None
    if buf[pos : pos + 1] != b"*":
        msg = f"expected a RESP array, got {bytes(buf[pos : pos + 40])!r}"
        raise ValueError(msg)
    count = int(buf[pos + 1 : line])
    at = line + 2
    parts: list[bytes | int] = []
    for _ in range(count):
        head = buf.find(b"\r\n", at)
        if head < 0:
            return None
        if buf[at : at + 1] == b":":  # the subscription count of a (un)subscribe reply
            parts.append(int(buf[at + 1 : head]))
            at = head + 2
            continue
        start = head + 2
        stop = start + int(buf[at + 1 : head])
        if stop + 2 > len(buf):
            return None
        parts.append(bytes(buf[start:stop]))
        at = stop + 2
    return parts, at


def take_arrays(buf: bytearray) -> list[list[bytes | int]]:
    """Every complete RESP array at the front of ``buf``, removed from it."""
    found = []
    pos = 0
    while (item := _array_at(buf, pos)) is not None:
        parts, pos = item
        found.append(parts)
    del buf[:pos]
    return found


def _subscribe(host: str, port: int, channel: bytes) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(command(b"SUBSCRIBE", channel))
    buf = bytearray()
    while not (replies := take_arrays(buf)):
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("Redis closed the connection during SUBSCRIBE")
        buf += data
    if replies[0][0] != b"subscribe":
        raise ConnectionError(f"unexpected reply to SUBSCRIBE: {replies[0]!r}")
    sock.setblocking(False)
    return sock


def _listen(
    selector: selectors.BaseSelector, pipe: Connection, buffers: dict[int, bytearray]
) -> tuple[list[float], list[int]]:
    """Read every subscriber until the parent says stop; the lags (seconds) of every
    message received and how many each connection received."""
    lags: list[float] = []
    counts = dict.fromkeys(buffers, 0)
    while True:
        for key, _ in selector.select():
            if key.fileobj is pipe:
                pipe.recv()  # "stop"
                return lags, list(counts.values())
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            data = sock.recv(1 << 16)
            now = time.time()
            if not data:
                raise ConnectionError("Redis closed a subscriber connection")
            buf = buffers[key.fd]
            buf += data
            for parts in take_arrays(buf):
                payload = parts[-1]
                if parts[0] != b"message" or not isinstance(payload, bytes):
                    continue
                found = _TS.search(payload)
                if found is None:
                    raise ValueError(f"a message without ts: {payload[:80]!r}")
                lags.append(now - float(found.group(1)))
                counts[key.fd] += 1


def subscribers(pipe: Connection, host: str, port: int, channel: str) -> None:
    """A process of many subscriber connections, driven by the parent over ``pipe``:

    - ``("add", n)``: open n more connections and SUBSCRIBE each; answers the total;
    - ``("listen", None)``: read until a second message arrives on the pipe; answers
      ``(lags, per-connection counts)``;
    - ``("quit", None)``: close everything and return.
    """
    selector = selectors.DefaultSelector()
    selector.register(pipe, selectors.EVENT_READ)
    socks: list[socket.socket] = []
    buffers: dict[int, bytearray] = {}
    try:
        while True:
            what, arg = pipe.recv()
            if what == "add":
                for _ in range(arg):
                    sock = _subscribe(host, port, channel.encode())
                    socks.append(sock)
                    buffers[sock.fileno()] = bytearray()
                    selector.register(sock, selectors.EVENT_READ)
                pipe.send(len(socks))
            elif what == "listen":
                pipe.send(_listen(selector, pipe, buffers))
            else:
                return
    finally:
        for sock in socks:
            sock.close()


def prober(pipe: Connection, host: str, port: int, interval: float) -> None:
    """``redis-cli --latency`` in a process: PING, wait for PONG, sleep ``interval``.

    ``("run", None)`` starts a window; the next message on the pipe ends it and is
    answered with the round trips (seconds) of the window; ``("quit", None)`` returns.
    """
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            what, _ = pipe.recv()
            if what != "run":
                return
            rtts: list[float] = []
            while not pipe.poll(interval):
                started = time.perf_counter()
                sock.sendall(b"PING\r\n")
                reply = b""
                while not reply.endswith(b"\r\n"):
                    reply += sock.recv(64)
                rtts.append(time.perf_counter() - started)
            pipe.recv()  # "stop"
            pipe.send(rtts)
