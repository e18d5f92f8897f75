"""The README's main command, end to end: ``python -m services.demo``."""

from __future__ import annotations

import re
import socket
import sys

from services.processes import clean_env, run

STEPS = 8
DEMO = [sys.executable, "-m", "services.demo"]


def test_demo_runs_every_step_and_leaves_nothing_running(redis_url: str) -> None:
    proc = run(DEMO, env=clean_env(REVSYNC_REDIS_URL=redis_url), timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    titles = re.findall(r"^\[(\d+)\] (.+)$", out, re.M)
    assert [int(n) for n, _ in titles] == list(range(1, STEPS + 1))
    outcomes = re.findall(r"^    (PASS|FAIL): (.+)$", out, re.M)
    assert [kind for kind, _ in outcomes] == ["PASS"] * STEPS, out
    assert f"demo: all {STEPS} steps passed" in out
    for needle in (
        "200 {'hello': 'world'}",
        "401 'Token has been revoked' on both",
        "restarted, ready",
        "the restarted node read it from the store",
        "every node refuses the access token",
    ):
        assert needle in out
    propagation = re.search(r"refused node1 ([\d.]+) ms, node2 ([\d.]+) ms", out)
    assert propagation is not None
    assert max(float(propagation[1]), float(propagation[2])) < 2000

    # Nothing left listening on the node ports.
    for port in re.findall(r"node\d ready at http://127.0.0.1:(\d+)", out):
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", int(port))) != 0, f"port {port} still open"


def test_demo_says_how_to_get_redis_when_none_answers(tmp_path: object) -> None:
    proc = run(DEMO, env=clean_env(REVSYNC_REDIS_URL="redis://127.0.0.1:1/0"))
    assert proc.returncode == 2
    assert "does not answer" in proc.stderr
    assert "Traceback" not in proc.stderr
