"""The seed program's flow on one node with REVSYNC_REDIS_URL=memory://: no Redis.

An API node (the seed program's endpoints) is served by a real hypercorn process
whose every Python process records each outgoing socket connection (an audit hook
installed by a sitecustomize module).  It must become ready, log in, log out and
refuse the revoked token without a single connection attempt: nothing dials
Redis at 127.0.0.1:6379 or anywhere else.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from services.processes import Node, clean_env, run
from tests.services.conftest import SECRET

AUDIT = """
import os, sys

_LOG = os.environ["CONNECT_AUDIT_LOG"]


def _record(event, args):
    if event == "socket.connect":
        with open(_LOG, "a") as log:
            log.write(f"connect {os.getpid()} {args[1]!r}\\n")


with open(_LOG, "a") as log:
    log.write(f"hooked {os.getpid()}\\n")
sys.addaudithook(_record)
"""


def audited_env(tmp_path: Path, **settings: str) -> tuple[dict[str, str], Path]:
    """An environment whose Python processes log every socket.connect to a file."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT)
    log = tmp_path / "connects.log"
    env = clean_env(PYTHONPATH=str(hooks), CONNECT_AUDIT_LOG=str(log), **settings)
    return env, log


def test_the_audit_hook_sees_a_connection_attempt(tmp_path: Path) -> None:
    # The control: the same hook does record a connection, refused or not.
    env, log = audited_env(tmp_path)
    code = (
        "import socket\n"
        "try:\n socket.create_connection(('127.0.0.1', 6379), 1)\n"
        "except OSError:\n pass"
    )
    assert run([sys.executable, "-c", code], env=env).returncode == 0
    assert "connect" in log.read_text()
    assert "6379" in log.read_text()


def test_a_single_node_runs_the_seed_flow_without_any_redis(tmp_path: Path) -> None:
    env, log = audited_env(
        tmp_path,
        JWT_SECRET_KEY=SECRET,
        REVSYNC_REDIS_URL="memory://",
        REVSYNC_STORE_URL=f"sqlite:///{tmp_path / 'revsync.db'}",
        REVSYNC_HEARTBEAT_INTERVAL="0.2",
    )
    node = Node("solo", env, tmp_path)
    node.start()
    try:
        node.wait_ready("/readyz", timeout=30)
        with httpx.Client(base_url=node.url, timeout=5) as client:
            ready = client.get("/readyz").json()
            assert ready["ready"] is True
            assert ready["connection"]["bus"] == "connected"
            tokens = client.post("/login", json={"username": "test", "password": "test"}).json()
            bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
            assert client.get("/protected", headers=bearer).status_code == 200
            assert client.delete("/logout", headers=bearer).status_code == 200
            refused = client.get("/protected", headers=bearer)
            assert refused.status_code == 401
    finally:
        node.stop()
    lines = log.read_text().splitlines()
    hooked = {line.split()[1] for line in lines if line.startswith("hooked")}
    assert len(hooked) >= 2  # hypercorn and its worker both ran under the hook
    assert [line for line in lines if line.startswith("connect")] == []
