"""HTTP load: wrk when installed, else a Python generator (with a loud warning).

wrk (C, event loop, keep-alive connections) is the load generator of record:
``sudo apt-get install wrk`` (Debian/Ubuntu), ``brew install wrk`` (macOS), or
build it from https://github.com/wg/wrk.  Its summary comes back as JSON through
bench/wrk_report.lua.  Without wrk, ``python -m bench.loadgen`` runs in a process of
its own with the same connection count; it is far slower than wrk and saturates
before a fast server does, so its requests/s understate the server and its ratios
compress toward 1.  Results say which generator produced them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LUA = Path(__file__).resolve().parent / "wrk_report.lua"
WARNING = (
    "\n" + "!" * 78 + "\n"
    "!! wrk is not installed: falling back to a Python load generator.\n"
    "!! Its figures understate every server and compress the ratios toward 1.\n"
    "!! Install wrk (Debian/Ubuntu: sudo apt-get install wrk; macOS: brew install wrk)\n"
    "!! and re-run for figures worth quoting.\n" + "!" * 78 + "\n"
)


def generator() -> str:
    """'wrk' when it is on PATH (and REVSYNC_BENCH_LOADGEN is not "python"), else
    'python-fallback'."""
    if os.environ.get("REVSYNC_BENCH_LOADGEN") == "python" or not shutil.which("wrk"):
        return "python-fallback"
    return "wrk"


def run(url: str, headers: dict[str, str], seconds: float, connections: int) -> dict[str, Any]:
    """Load ``url`` for ``seconds``; requests/s, latency percentiles (ms) and errors."""
    return finish(start(url, headers, seconds, connections), seconds)


def start(
    url: str, headers: dict[str, str], seconds: float, connections: int
) -> subprocess.Popen[str]:
    """Start loading ``url`` for ``seconds`` in the background; :func:`finish` reads it."""
    if generator() == "wrk":
        args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
        args += ["--timeout", "5s", "-s", str(LUA)]
        for name, value in headers.items():
            args += ["-H", f"{name}: {value}"]
        args.append(url)
    else:
        args = [sys.executable, "-m", "bench.loadgen", url, str(seconds), str(connections)]
        args += [f"{k}: {v}" for k, v in headers.items()]
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )


def interrupt(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """End a load started by :func:`start` now (SIGINT: wrk, like the fallback, stops
    and reports what it did so far); its summary (see :func:`run`)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    return finish(proc, 0)


def finish(proc: subprocess.Popen[str], seconds: float) -> dict[str, Any]:
    """Wait for a load started by :func:`start`; its summary (see :func:`run`)."""
    out, err = proc.communicate(timeout=seconds + 30)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, out, err)
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    raw = json.loads(line.removeprefix("WRKJSON "))
    errors = raw["errors"]
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["latency_us"]["p50"] / 1000,
        "p90_ms": raw["latency_us"]["p90"] / 1000,
        "p99_ms": raw["latency_us"]["p99"] / 1000,
        "max_ms": raw["latency_us"]["max"] / 1000,
        "errors": sum(errors.values()),
        "non_2xx": errors["status"],
    }


# -- the fallback generator ------------------------------------------------------------------


async def _connection(
    host: str,
    port: int,
    request: bytes,
    stop: list[float],
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop[0]:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not 200 <= status < 400:
                errors[0] += 1
    finally:
        writer.close()


async def _load(url: str, seconds: float, connections: int, headers: list[str]) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"GET {parts.path or '/'} HTTP/1.1", f"Host: {host}:{port}", *headers]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    errors = [0]
    started = time.perf_counter()
    stop = [started + seconds]
    # SIGINT ends the load early and still reports, as it does wrk's (see interrupt()).
    signal.signal(signal.SIGINT, lambda _signum, _frame: stop.__setitem__(0, 0.0))
    await asyncio.gather(
        *(_connection(host, port, request, stop, latencies, errors) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies) or [0.0]

    def us(q: float) -> int:
        return int(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6)

    summary = {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "bytes": 0,
        "errors": {"connect": 0, "read": 0, "write": 0, "status": errors[0], "timeout": 0},
        "latency_us": {
            "p50": us(0.5),
            "p90": us(0.9),
            "p99": us(0.99),
            "max": int(ordered[-1] * 1e6),
            "mean": sum(ordered) / len(ordered) * 1e6,
        },
    }
    print("WRKJSON " + json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description="fallback HTTP load generator (see module doc)")
    parser.add_argument("url")
    parser.add_argument("seconds", type=float)
    parser.add_argument("connections", type=int)
    parser.add_argument("headers", nargs="*", help='"Name: value"')
    args = parser.parse_args()
    asyncio.run(_load(args.url, args.seconds, args.connections, args.headers))


if __name__ == "__main__":
    main()
