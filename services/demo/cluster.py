"""Local processes of a revsync deployment: Redis, the resync job, API nodes.

Each process runs in a session of its own, so killing it (``kill -9`` included)
takes its children with it and nothing is left running.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


class ClusterError(Exception):
    """Something the demo needs could not be set up; the message says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    # The worker processes of hypercorn share the group: make sure none survives.
    _kill_group(proc, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)


def _wait_group_gone(pgid: int, timeout: float = 5.0) -> None:
    """Wait until every process of the group has exited (hypercorn's worker holds the
    listening socket, so a restart on the same port must wait for it too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.01)


class RedisProcess:
    """A redis-server of our own on a free port (only when no Redis is at hand)."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            msg = (
                "no Redis: REVSYNC_REDIS_URL is not set, nothing answers at 127.0.0.1:6379, "
                "and redis-server is not on PATH. Install it (Debian/Ubuntu: "
                "sudo apt-get install redis-server; macOS: brew install redis) or set "
                "REVSYNC_REDIS_URL=redis://host:port/0"
            )
            raise ClusterError(msg)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + 10
        while not redis_answers(self.url, 0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                msg = f"redis-server did not start on port {self.port}"
                raise ClusterError(msg)
            time.sleep(0.05)

    def stop(self) -> None:
        _stop(self.proc)


def pick_redis(environ: Mapping[str, str], workdir: Path) -> tuple[str, RedisProcess | None, str]:
    """(url, process we started or None, how it was found)."""
    url = environ.get("REVSYNC_REDIS_URL")
    if url:
        if not redis_answers(url, 2.0):
            msg = f"REVSYNC_REDIS_URL={url} does not answer; start that Redis or unset the variable"
            raise ClusterError(msg)
        return url, None, "REVSYNC_REDIS_URL"
    if redis_answers(DEFAULT_REDIS, 0.5):
        return DEFAULT_REDIS, None, "the Redis at 127.0.0.1:6379"
    proc = RedisProcess(workdir)
    return proc.url, proc, f"a redis-server started on port {proc.port}"


class Node:
    """One API node: ``hypercorn services.api.app:app`` on a loopback port."""

    def __init__(self, name: str, env: Mapping[str, str], logdir: Path, port: int | None = None):
        self.name = name
        self.port = port or free_port()
        self.env = dict(env)
        self.env.setdefault("REVSYNC_NODE_ID", name)
        self.log = logdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [
            sys.executable,
            "-m",
            "hypercorn",
            "services.api.app:app",
            "--bind",
            f"127.0.0.1:{self.port}",
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Block until /readyz answers 200; return the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                msg = f"{self.name} exited during start-up:\n{self.log_tail()}"
                raise ClusterError(msg)
            try:
                resp = httpx.get(f"{self.url}/readyz", timeout=1.0)
                if resp.status_code == 200:
                    return time.monotonic() - start
                last = resp.text
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
            time.sleep(0.05)
        msg = f"{self.name} not ready after {timeout:g}s (last answer: {last})\n{self.log_tail()}"
        raise ClusterError(msg)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(f"  | {line}" for line in text.splitlines()[-lines:])

    def kill9(self) -> None:
        """kill -9 the node and everything it started."""
        if self.proc is not None:
            _kill_group(self.proc, signal.SIGKILL)
            self.proc.wait(5)
            _wait_group_gone(self.proc.pid)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


class Cluster:
    """Redis (found or started), a shared SQLite store, the resync job and N nodes."""

    def __init__(self, workdir: Path, nodes: int = 3, environ: Mapping[str, str] | None = None):
        self.workdir = workdir
        self.environ = dict(os.environ if environ is None else environ)
        self.redis_proc: RedisProcess | None = None
        self.redis_url = ""
        self.redis_source = ""
        self.admin_token = secrets.token_urlsafe(24)
        self.count = nodes
        self.nodes: list[Node] = []
        self.store_url = f"sqlite:///{workdir / 'revsync.db'}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in self.environ.items() if not k.startswith(("REVSYNC_", "JWT_"))}
        env.update(
            {
                "PYTHONPATH": str(ROOT),
                "JWT_SECRET_KEY": secrets.token_hex(32),
                "REVSYNC_REDIS_URL": self.redis_url,
                "REVSYNC_STORE_URL": self.store_url,
                "REVSYNC_CHANNEL": f"revsync-demo-{secrets.token_hex(4)}",
                "REVSYNC_EVENT_KEY": secrets.token_hex(32),
                "REVSYNC_ADMIN_TOKEN": self.admin_token,
            }
        )
        return env

    def setup(self) -> None:
        """Find or start Redis; every other step is its own method so callers can print."""
        self.redis_url, self.redis_proc, self.redis_source = pick_redis(self.environ, self.workdir)
        self._env = self.env()

    def resync(self) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "services.resync", "--wait", "5"],
            cwd=ROOT,
            env=self._env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            msg = f"the resync job failed ({result.returncode}): {result.stderr.strip()}"
            raise ClusterError(msg)
        return result.stdout

    def start_nodes(self) -> None:
        self.nodes = [Node(f"node{i}", self._env, self.workdir) for i in range(1, self.count + 1)]
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready()

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.redis_proc is not None:
            self.redis_proc.stop()
            self.redis_proc = None
