"""The benchmarks still run: ``python -m bench --quick`` writes every result file.

Never asserts a speed: quick mode uses tiny sizes on whatever machine CI has.  Needs
redis-server on PATH (the bench starts its own); without PostgreSQL or wrk the bench
records "not run" or falls back to its Python load generator, and this still passes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from services.processes import run

NAMES = ("request_cost", "propagation", "startup", "mass_revocation", "lookup")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH; the bench starts a private one")
    results = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "REVSYNC_BENCH_RESULTS": str(results)}
    command = [sys.executable, "-m", "bench", "--quick", "--docs", str(results / "benchmarks.md")]
    proc = run(command, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results


def _load(results: Path, name: str) -> dict:
    data = json.loads((results / f"{name}.quick.json").read_text())
    assert data["benchmark"] == name
    assert data["quick"] is True
    assert data["method"]
    assert set(data["machine"]) >= {"cpu", "cpus", "load_average", "python", "measured_at"}
    return data


def test_every_result_file_is_written(quick_run: Path) -> None:
    for name in NAMES:
        _load(quick_run, name)


def test_request_cost_fields(quick_run: Path) -> None:
    data = _load(quick_run, "request_cost")
    assert data["load_generator"] in ("wrk", "python-fallback")
    for variant in ("revsync", "no_check", "redis_get", "revsync_nocache"):
        assert set(data["summary"][variant]) >= {"rps", "p50_ms", "p99_ms", "errors"}
        assert data["summary"][variant]["errors"] == 0
    # (d) needs a pip install into bench/.venv-qje: either it ran or it says why not
    assert "qje_seed" in data["summary"] or data["notes"]["qje_seed"].startswith("not run")
    assert set(data["ratios"]) >= {"revsync/no_check", "revsync/redis_get", "revsync/qje_seed"}


def test_propagation_fields(quick_run: Path) -> None:
    data = _load(quick_run, "propagation")
    for key in ("subscriber_side_ms", "bus_floor_ms", "http_poll_ms"):
        assert set(data["three_nodes"][key]) >= {"count", "p50", "p99", "max"}
    assert [row["subscribers"] for row in data["scaling"]] == [1, 3]
    assert set(data["target"]) == {"p99_ms", "value", "met"}
    assert set(data["target_p50"]) == {"p50_ms", "value", "met"}
    loaded = data["under_load"]
    for key in ("subscriber_side_ms", "bus_floor_ms"):
        assert set(loaded[key]) >= {"count", "p50", "p90", "p99", "max"}
        assert loaded[key]["count"] > 0
    assert len(loaded["node_rps"]) == 3
    assert loaded["load_generator"] in ("wrk", "python-fallback")
    assert set(loaded["target"]) == {"p99_ms", "value", "met"}


def test_startup_fields(quick_run: Path) -> None:
    data = _load(quick_run, "startup")
    for store in ("sqlite", "postgres", "redis"):
        result = data["stores"][store]
        if "status" in result:  # PostgreSQL may be missing on a CI machine
            assert result["status"].startswith("not run")
            continue
        for point in result["points"]:
            assert set(point) >= {"entries", "ready_s", "rss_mb", "rss_delta_mb", "populate_s"}
        assert set(result["target"]) >= {"ready_s", "rss_delta_mb", "met"}


def test_mass_revocation_fields(quick_run: Path) -> None:
    data = _load(quick_run, "mass_revocation")
    result = data["stores"]["sqlite"]
    assert set(result) >= {"revoke_many_s", "per_node_s", "all_nodes_s", "target"}
    assert len(result["per_node_s"]) == 3
    assert result["sample_refused"] == 3 * min(200, data["tokens"])


def test_lookup_fields(quick_run: Path) -> None:
    data = _load(quick_run, "lookup")
    for name in ("revocation_set", "tlru_cache"):
        assert set(data[name]) >= {"hit_ns", "miss_ns", "load_s", "bytes_per_entry"}
    assert set(data["redis_get"]) >= {"hit_ns", "miss_ns", "async_hit_ns", "async_miss_ns"}


def test_report_is_written(quick_run: Path) -> None:
    text = (quick_run / "benchmarks.md").read_text()
    for heading in ("## 1. Request cost", "## 2. Propagation", "## 3. Start-up backfill"):
        assert heading in text
    pytest.importorskip("matplotlib")
    assert (quick_run / "request_cost.quick.png").stat().st_size > 0


class _Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # the stdlib's name for the GET handler
        body = b'{"hello":"world"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def hello_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/protected"
    finally:
        server.shutdown()
        server.server_close()


def test_python_fallback_load_generator(hello_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Machines without wrk still get figures (with a warning) from the fallback."""
    from bench import loadgen

    monkeypatch.setenv("REVSYNC_BENCH_LOADGEN", "python")
    assert loadgen.generator() == "python-fallback"
    result = loadgen.run(hello_server, {"Authorization": "Bearer x"}, 0.5, 2)
    assert result["requests"] > 0
    assert result["errors"] == 0
    assert set(result) >= {"rps", "p50_ms", "p99_ms", "max_ms"}
