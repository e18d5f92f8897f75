"""The child pytest run of test_processes.py (collected only when named): it starts
Redis and a node through services.processes, then fails or hangs as told."""

from __future__ import annotations

import os
import time
from pathlib import Path

from services.processes import Node, RedisServer, free_port, running

CHILD = os.environ["ATTACK16_CHILD"]


def test_child_starts_processes_then_fails_or_hangs() -> None:
    tmp = Path(os.environ["ATTACK16_TMP"])
    redis_server = RedisServer(free_port(), tmp)
    env = {
        "JWT_SECRET_KEY": "c" * 32,
        "REVSYNC_STORE_URL": f"sqlite:///{tmp / 'c.db'}",
        "REVSYNC_CHANNEL": "attack16-child",
        "REVSYNC_REDIS_URL": "",  # set below
    }
    with running(redis_server):
        env["REVSYNC_REDIS_URL"] = redis_server.url
        assert redis_server.proc is not None
        (tmp / "redis.pid").write_text(str(redis_server.proc.pid))
        with running(Node("child", {**os.environ, **env}, tmp)) as (node,):
            node.wait_ready(timeout=30)
            # child.ran, not child.log: the node "child" logs to child.log
            (tmp / "child.ran").write_text("child ran\n")
            if CHILD == "fail":
                raise AssertionError("this child test fails on purpose")
            time.sleep(600)
