"""Local processes for the demo, the benchmarks and the tests: Redis, HTTP nodes, jobs.

The one way this repository starts a process.  Each runs in a session (so a process
group) of its own, and ending it ends the whole group: SIGTERM, SIGKILL for whatever
is still there after the grace period, then a wait until no process of the group is
alive.  That matters because hypercorn serves from a worker process (and
multiprocessing adds a resource tracker) in the parent's group: killing only the
parent leaves the worker serving, an orphan, until someone kills it by hand.

Every group started here is remembered, so the test suite can check at its end that
nothing it started is still alive (``leftovers``, used by tests/conftest.py).
Reading process tables uses /proc (Linux); elsewhere the checks fall back to
``killpg(pgid, 0)``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
API_APP = "services.api.app:app"
GRACE = 5.0
"""Seconds a group gets to exit after SIGTERM, and again after SIGKILL."""

_PROC = Path("/proc")
_STARTED: set[int] = set()  # process group ids of everything started here


class ProcessError(RuntimeError):
    """A process could not be started or did not come up; the message says why."""


class Unavailable(ProcessError):
    """A program that is needed is not installed."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(environ: Mapping[str, str] | None = None, /, **extra: str) -> dict[str, str]:
    """``environ`` (default: this process's environment) without ``REVSYNC_*`` and
    ``JWT_*`` variables, plus ``extra``: a node runs on the settings it is given."""
    base = os.environ if environ is None else environ
    env = {k: v for k, v in base.items() if not k.startswith(("REVSYNC_", "JWT_"))}
    env.update(extra)
    return env


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


# -- the process table ---------------------------------------------------------------


class ProcInfo(NamedTuple):
    pid: int
    state: str
    ppid: int
    pgid: int


def _table() -> Iterator[ProcInfo]:
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # The command name may hold spaces and parentheses: the fields follow the last ')'.
        state, ppid, pgid = stat.rsplit(")", 1)[1].split()[:3]
        yield ProcInfo(int(entry.name), state, int(ppid), int(pgid))


def _alive(info: ProcInfo) -> bool:
    return info.state not in ("Z", "X")  # a zombie has exited; only its exit status is left


def group_members(pgid: int) -> list[int]:
    """The live processes of group ``pgid``."""
    if not _PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    return [p.pid for p in _table() if p.pgid == pgid and _alive(p)]


def command_line(pid: int) -> str:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"


def _reap_orphans(pgid: int | None = None) -> None:
    """Collect the exit status of exited processes that were re-parented to us (only a
    subreaper gets them; see ``adopt_orphans``), so they do not linger as zombies.
    With ``pgid``, only those of that group, never its leader: that one is our Popen
    child, whose exit status its Popen must read itself."""
    if not _PROC.is_dir():
        return
    me = os.getpid()
    for info in _table():
        if info.ppid != me or _alive(info):
            continue
        if pgid is None or (info.pgid == pgid and info.pid != pgid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(info.pid, os.WNOHANG)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(proc: subprocess.Popen[Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        proc.poll()  # reaps the leader once it has exited
        _reap_orphans(proc.pid)
        if not group_members(proc.pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def end_group(proc: subprocess.Popen[Any], grace: float = GRACE, *, term: bool = True) -> None:
    """End the group ``proc`` leads (its session): SIGTERM, then after ``grace``
    seconds SIGKILL for anything left, and wait until no process of it is alive.
    ``term=False`` is kill -9 at once."""
    gone = False
    if term:
        _signal_group(proc.pid, signal.SIGTERM)
        gone = _wait_group_gone(proc, grace)
    if not gone:
        _signal_group(proc.pid, signal.SIGKILL)
        if not _wait_group_gone(proc, grace):
            left = ", ".join(map(str, group_members(proc.pid)))
            msg = f"processes {left} of group {proc.pid} survived SIGKILL"
            raise ProcessError(msg)
    # Gone: forget the id, which pid wrap-around (pid_max is often 32768) may hand to
    # an unrelated process later.
    _STARTED.discard(proc.pid)


def _popen(args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    proc: subprocess.Popen[Any] = subprocess.Popen(list(args), start_new_session=True, **kwargs)
    _STARTED.add(proc.pid)  # start_new_session: its group id is its pid
    return proc


# -- leak checks -------------------------------------------------------------------------

PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans() -> bool:
    """Make this process the subreaper of everything it starts (Linux): a process whose
    parent dies is then re-parented here instead of to init, so it is still among our
    children for ``leftovers`` to see.  False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def leftovers() -> dict[int, str]:
    """Processes still alive that this process started (any member of a group started
    here) or adopted (any child at all): pid -> command line.  Zombies are reaped."""
    _reap_orphans()
    if not _PROC.is_dir():
        return {pid: "?" for pgid in _STARTED for pid in group_members(pgid)}
    me = os.getpid()
    return {
        p.pid: command_line(p.pid)
        for p in _table()
        if _alive(p) and (p.ppid == me or p.pgid in _STARTED)
    }


def kill_leftovers(pids: Iterable[int]) -> None:
    """kill -9 each process and its whole group (unless that is our own group), then
    the processes that killing them orphaned (a killed hypercorn leaves its worker to
    us), until none is left or GRACE passes."""
    own_group = os.getpgrp()
    doomed = set(pids)
    deadline = time.monotonic() + GRACE
    while doomed:
        for pid in doomed:
            with contextlib.suppress(OSError):
                group = os.getpgid(pid)
                if group != own_group:
                    os.killpg(group, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
        if time.monotonic() >= deadline:
            return
        time.sleep(0.01)
        doomed = set(leftovers())


# -- processes ------------------------------------------------------------------------------


class Process:
    """A command in a session of its own, its output appended to ``log`` (or dropped)."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.env = None if env is None else dict(env)
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> None:
        with contextlib.ExitStack() as stack:
            out: Any = subprocess.DEVNULL
            if self.log is not None:
                out = stack.enter_context(self.log.open("ab"))
            self.started_at = time.monotonic()
            self.proc = _popen(
                self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = GRACE) -> None:
        """SIGTERM the process and everything in its group, SIGKILL what is left."""
        proc, self.proc = self.proc, None
        if proc is not None:
            end_group(proc, grace)

    def kill(self) -> None:
        """kill -9 the process and everything in its group, and wait until all are gone
        (a restart on the same port must wait for the worker holding the socket too)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            end_group(proc, term=False)

    def log_tail(self, lines: int = 20) -> str:
        if self.log is None:
            return ""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(f"  | {line}" for line in text.splitlines()[-lines:])


REDIS_MISSING = (
    "redis-server is not on PATH. Install it (Debian/Ubuntu: sudo apt-get install "
    "redis-server; macOS: brew install redis)"
)


class RedisServer(Process):
    """``redis-server`` on a loopback port that keeps nothing on disk: a Redis of our own."""

    def __init__(self, port: int, workdir: Path, extra: Sequence[str] | None = None) -> None:
        super().__init__(f"redis-{port}", [])
        self.port = port
        self.workdir = workdir
        self.extra = list(extra or [])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers PING (10 s at most)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise Unavailable(REDIS_MISSING)
        self.args = [
            binary,
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(self.workdir)),
            *self.extra,
        ]
        super().start()
        deadline = time.monotonic() + 10
        while not redis_answers(self.url, 0.2):
            if not self.running or time.monotonic() > deadline:
                self.kill()
                msg = f"redis-server did not start on port {self.port}"
                raise ProcessError(msg)
            time.sleep(0.02)

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


class Server(Process):
    """``hypercorn <app>`` with one worker process on a loopback port, logging to
    ``logdir/<name>.log``."""

    def __init__(
        self,
        name: str,
        app: str,
        env: Mapping[str, str] | None,
        logdir: Path,
        *,
        port: int | None = None,
        python: str | None = None,
    ) -> None:
        self.port = port or free_port()
        args = [python or sys.executable, "-m", "hypercorn", app]
        args += ["--bind", f"127.0.0.1:{self.port}", "--workers", "1"]
        self.log: Path = logdir / f"{name}.log"
        super().__init__(name, args, env=env, log=self.log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(
        self,
        path: str = "/readyz",
        timeout: float = 30.0,
        interval: float = 0.02,
        *,
        any_answer: bool = False,
    ) -> float:
        """Block until ``path`` answers 200 (any HTTP answer with ``any_answer``);
        return the seconds since ``start()``."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.running:
                    msg = f"{self.name} exited during start-up:\n{self.log_tail()}"
                    raise ProcessError(msg)
                try:
                    resp = client.get(self.url + path)
                    if resp.status_code == 200 or any_answer:
                        return time.monotonic() - self.started_at
                    last = f"{resp.status_code} {resp.text[:200]}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                time.sleep(interval)
        msg = f"{self.name}: {path} not 200 after {timeout:g}s (last answer: {last})"
        raise ProcessError(f"{msg}\n{self.log_tail()}")

    def rss_bytes(self) -> int:
        """Resident memory of every process of the server's group (hypercorn and workers)."""
        total = 0
        for pid in group_members(self.proc.pid) if self.proc is not None else []:
            with contextlib.suppress(OSError, ValueError, IndexError):
                for line in (_PROC / str(pid) / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total


class Node(Server):
    """A revsync node (``services.api`` unless ``app`` names another) whose
    ``REVSYNC_NODE_ID`` is its name, unless ``env`` sets one."""

    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        logdir: Path,
        port: int | None = None,
        *,
        app: str = API_APP,
    ) -> None:
        super().__init__(name, app, {"REVSYNC_NODE_ID": name, **env}, logdir, port=port)


S = TypeVar("S", bound=Process)


@contextlib.contextmanager
def running(*items: S) -> Iterator[list[S]]:
    """Start the processes; stop every one of them on the way out, whatever happened."""
    started: list[S] = []
    try:
        for item in items:
            item.start()
            started.append(item)
        yield started
    finally:
        for item in started:
            item.stop()


def start_ready(servers: Sequence[Server], timeout: float = 30.0) -> None:
    """Start every server, then wait for each to be ready (they start up side by side)."""
    for server in servers:
        server.start()
    for server in servers:
        server.wait_ready(timeout=timeout)


def run(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end in a session of its own; return its status and output.

    Whatever it leaves behind in its group is killed when it ends; on ``timeout`` the
    whole group is killed and ``subprocess.TimeoutExpired`` raised.
    """
    proc = _popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:  # the timeout, or Ctrl-C: nothing it started may go on running
        end_group(proc, term=False)
        proc.communicate()
        raise
    end_group(proc, term=False)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
