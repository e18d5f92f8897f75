"""Issue 16 attack 4: one process runner (services/processes.py).  The demo, a test
that fails and a test run interrupted by SIGINT leave no redis-server, hypercorn or
multiprocessing process behind.

Every process started here carries a marker in its environment (children inherit it,
and ``clean_env`` keeps it), so leftovers are found by marker in /proc, whatever
re-parented them, without confusing them with a test run going on in parallel.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT

MARK = "ATTACK16_MARK"
CHILD_RUN = Path(__file__).with_name("child_run.py")
"""The child run: a file pytest collects only when given it by name."""


def marked(mark: str) -> dict[int, str]:
    """Live processes whose environment carries ``mark``: pid -> command line."""
    found = {}
    needle = f"{MARK}={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            status = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if status == "Z":
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        found[int(entry.name)] = cmd
    return found


def wait_gone(mark: str, timeout: float = 15.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (left := marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _kill(pids: dict[int, str]) -> None:
    for pid in pids:  # only processes this test started (they carry its marker)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _env(mark: str, **extra: str) -> dict[str, str]:
    return {**os.environ, MARK: mark, **extra}


def test_the_demo_leaves_nothing_behind() -> None:
    mark = uuid.uuid4().hex
    proc = subprocess.run(
        [sys.executable, "-m", "services.demo"],
        cwd=ROOT,
        env=_env(mark),
        capture_output=True,
        text=True,
        timeout=300,
    )
    left = wait_gone(mark, 10)
    _kill(left)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not left, f"the demo left {left}"


def _pytest(mark: str, child: str, tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(CHILD_RUN)],
        cwd=ROOT,
        env=_env(mark, ATTACK16_CHILD=child, ATTACK16_TMP=str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_for_children(mark: str, proc: subprocess.Popen[str], want: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        cmds = marked(mark).values()
        servers = [c for c in cmds if "hypercorn" in c]
        if len(servers) >= want:
            return
        time.sleep(0.2)
    pytest.fail(f"the child run never started its processes: {marked(mark)}")


def _wait_for_file(path: Path, proc: subprocess.Popen[str]) -> None:
    """Until the child has written ``path`` (its node answered /readyz); a loaded
    machine may take far longer than the usual second."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists():
            return
        time.sleep(0.1)
    pytest.fail(f"the child run never got its node ready ({path} missing)")


def _redis_alive(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.parametrize("child", ["fail", "hang-sigint", "hang-double-sigint"])
def test_a_failed_or_interrupted_run_leaves_nothing_behind(child: str, tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    proc = _pytest(mark, child, tmp_path)
    try:
        if child.startswith("hang"):
            _wait_for_children(mark, proc, 1)  # hypercorn (redis-server rewrites its environ)
            _wait_for_file(tmp_path / "child.ran", proc)  # the node is up and serving
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C goes to the terminal's group
            if child == "hang-double-sigint":
                time.sleep(0.3)
                os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    left = wait_gone(mark, 10)
    # redis-server overwrites its environment with its process title: found by pid.
    pid = int((tmp_path / "redis.pid").read_text())
    if _redis_alive(pid):
        left[pid] = "redis-server"
    _kill(left)
    assert "child ran" in (tmp_path / "child.ran").read_text()
    assert not left, f"{child}: left behind {left}\n{out[-3000:]}"
    if child == "fail":
        assert proc.returncode == 1, out[-3000:]
        assert "processes left running" not in out


_TREE = """
import os, subprocess, sys, time
# A group leader in a session of its own (like hypercorn), with a worker in its group;
# this parent exits at once, so the leader is re-parented to the subreaper (pytest).
leader = subprocess.Popen([sys.executable, "-c", '''
import os, subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                          stdout=subprocess.DEVNULL)
print(worker.pid, flush=True)
time.sleep(120)
'''], start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
   stdin=subprocess.DEVNULL, text=True)
print(leader.pid, leader.stdout.readline().strip(), flush=True)
"""


def test_kill_leftovers_ends_an_adopted_leaders_worker_too() -> None:
    # tests/conftest.py's session-end check: an orphaned hypercorn (its parent, a demo
    # or a child pytest, was killed) is adopted by the pytest subreaper and listed; it
    # is killed with os.kill, not killpg, so its worker is adopted in turn, never
    # killed, and outlives the run although the report says "(killed now)".
    from services import processes

    if not processes.adopt_orphans():
        pytest.skip("no subreaper on this platform")
    out = subprocess.run(
        [sys.executable, "-c", _TREE], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    leader, worker = map(int, out.split())
    try:
        deadline = time.monotonic() + 5
        while leader not in processes.leftovers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leader in processes.leftovers()
        processes.kill_leftovers(processes.leftovers())
        time.sleep(0.5)
        alive = (
            Path(f"/proc/{worker}").exists()
            and "Z" not in (Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[0])
        )
        assert not alive, "the adopted leader's worker survived kill_leftovers"
    finally:
        _kill({leader: "", worker: ""})
        processes.leftovers()  # reaps them
