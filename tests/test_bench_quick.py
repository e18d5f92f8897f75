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

from bench.report import NAMES
from services.processes import run


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
            assert set(point) >= {
                "entries",
                "backfill_s",
                "ready_s",
                "rss_mb",
                "rss_delta_mb",
                "populate_s",
            }
            assert 0 <= point["backfill_s"] <= point["ready_s"]
        assert set(result["target"]) >= {"backfill_s", "ready_s", "rss_delta_mb", "met"}
        # Nodes restarted at once: with a checkpoint they read nothing from the store.
        restarts = result["restarts"]
        assert restarts["without_checkpoint"]["rows_read"] > 0
        assert restarts["with_checkpoint"]["rows_read"] == 0
        assert restarts["checkpoint_bytes"] > 0


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


def test_rolling_restart_misses_nothing(quick_run: Path) -> None:
    data = _load(quick_run, "rolling_restart")
    assert [row["store"] for row in data["rows"]] == ["postgres", "redis"]
    for row in data["rows"]:
        if "status" in row:  # PostgreSQL may be missing on a laptop (never under .ci/run)
            assert row["status"].startswith("not run")
            assert os.environ.get("REVSYNC_REQUIRE_SERVICES") != "1"
            continue
        assert row["revocations"] > 0
        assert row["missed"] == 0  # every node refuses every answered revocation
        assert len(row["restarts"]) == row["nodes"] == 3
        for restart in row["restarts"]:
            assert restart["requests"] > 0  # the proxy saw the node's start-up reads
            assert restart["bytes_from_store"] > 0
    assert data["target"] == {"missed": 0, "value": 0, "met": True}


def test_fanout_fields(quick_run: Path) -> None:
    data = _load(quick_run, "fanout")
    stages = [*data["stages"], data["batched"]]
    assert [(r["subscribers"], r["batch"]) for r in stages] == [(1, 1), (8, 1), (8, 10)]
    delivery = data["message_bytes"]["delivery_resp"]
    for row in stages:
        n = row["subscribers"]
        assert row["missed"] == 0  # every connection got every message
        assert row["publish_receivers_min"] == n  # Redis delivered each to all of them
        assert row["lag_ms"]["count"] == row["messages"] * n
        assert 0 < row["lag_ms"]["p50"] < 1000
        assert row["ping_idle_ms"]["count"] > 0 < row["ping_publishing_ms"]["count"]
        # Redis's own count of bytes out is the RESP push of each message to each
        # subscriber (seq and ts vary by a few digits), give or take the idle window.
        assert abs(row["out_bytes_per_delivery"] - delivery) < 0.25 * delivery
        assert row["publish_command_us"] > 0
    assert data["message_bytes"]["revoke_signed"] > data["message_bytes"]["revoke_unsigned"]
    assert set(data["fit"]) == {"redis_cpu_us", "out_bytes"}
    assert data["node_decode_us"]["revoke"] > 0


def test_start_cost_fields(quick_run: Path) -> None:
    data = _load(quick_run, "start_cost")
    # SQLite's figure is every read of the node's processes less an empty-store start's;
    # its /readyz polls make it too noisy to assert on at 2,000 rows.
    assert [p["entries"] for p in data["stores"]["sqlite"]["points"]] == [0, 2_000]
    assert "process_read_bytes" in data["stores"]["sqlite"]["points"][1]
    for store in ("postgres", "redis"):
        result = data["stores"][store]
        if "status" in result:  # PostgreSQL may be missing on a laptop (never under .ci/run)
            assert result["status"].startswith("not run")
            assert os.environ.get("REVSYNC_REQUIRE_SERVICES") != "1"
            continue
        empty, filled = result["points"]
        assert (empty["entries"], filled["entries"]) == (0, 2_000)
        # Every live revocation is read at start: at least its 36-character jti.
        assert filled["bytes_from_store"] - empty["bytes_from_store"] > 2_000 * 36
        assert filled["requests"] >= empty["requests"] > 0
        assert filled["resyncs_counted"] >= 1
        assert filled["resync_requests"] > 0


def test_capacity_model_is_generated(quick_run: Path) -> None:
    from bench.capacity import MARKERS

    text = (quick_run / "scale.quick.md").read_text()
    assert text.startswith(MARKERS[0])
    assert text.rstrip().endswith(MARKERS[1])
    for heading in ("**Measured inputs.**", "**Bus load**", "stops being enough", "**Steady"):
        assert heading in text
    assert "| 10,000 |" in text  # the extrapolation reaches the largest fleet
