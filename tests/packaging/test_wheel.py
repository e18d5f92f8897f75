"""What a team installs from PyPI runs in production: the built wheel, installed with
its extras into a clean virtualenv outside the repository, run from outside it.

Builds the sdist and the wheel (``python -m build``), then ``pip install`` into a
fresh venv (deps from pip's cache or PyPI): about a minute.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services.processes import clean_env, end_group, free_port, run
from tests.conftest import ROOT


@dataclass(frozen=True)
class Installed:
    wheel: Path
    sdist: Path
    venv: Path
    work: Path  # a directory outside the repository to run things from

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    assert not base.resolve().is_relative_to(ROOT)
    dist = base / "dist"
    built = run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(ROOT)],
        cwd=base,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = dist.glob("revsync-*.whl")
    (sdist,) = dist.glob("revsync-*.tar.gz")
    venv = base / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)], cwd=base, timeout=120)
    assert made.returncode == 0, made.stderr
    pip = run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"revsync[postgres,prometheus] @ {wheel.as_uri()}",
            "hypercorn",
        ],
        cwd=base,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    work = base / "work"
    work.mkdir()
    return Installed(wheel, sdist, venv, work)


def _env(installed: Installed, **extra: str) -> dict[str, str]:
    env = clean_env(**extra)
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = f"{installed.venv / 'bin'}:{env.get('PATH', '')}"
    return env


def test_wheel_and_sdist_contents(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert "revsync/py.typed" in names
    assert "revsync/cli.py" in names
    assert "revsync/health.py" in names
    assert "revsync/prometheus.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert not [n for n in names if n.startswith(("services/", "tests/", "bench/"))]
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(installed.wheel).read(meta).decode()
    assert "Provides-Extra: prometheus" in metadata
    assert "Provides-Extra: dev" not in metadata  # a dependency group, not published
    assert "cachetools" not in metadata.split("Provides-Extra: bench")[0]
    points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "revsync = revsync.cli:main" in zipfile.ZipFile(installed.wheel).read(points).decode()
    with tarfile.open(installed.sdist) as sdist:
        members = sdist.getnames()
    assert any(m.endswith("/LICENSE") for m in members), members
    assert any(m.endswith("/revsync/py.typed") for m in members), members


def test_console_script(installed: Installed, redis_url: str) -> None:
    store = f"sqlite:///{installed.work / 'script.db'}"
    env = _env(installed, REVSYNC_STORE_URL=store, REVSYNC_REDIS_URL=redis_url)
    proc = run([installed.bin("revsync"), "check"], env=env, cwd=installed.work)
    assert proc.returncode == 0, proc.stderr
    assert f"revsync: done: store {store} at seq 0 (epoch 1), 0 live rows, 0 pruned" in (
        proc.stdout
    )
    module = run([installed.bin("python"), "-m", "revsync", "status"], env=env, cwd=installed.work)
    assert module.returncode == 0, module.stderr
    assert "0 live rows" in module.stdout

    bad = _env(installed, REVSYNC_STORE_URL=store, REVSYNC_MAX_STALENESS="-1")
    proc = run([installed.bin("revsync"), "check"], env=bad, cwd=installed.work)
    assert proc.returncode == 2
    assert "REVSYNC_MAX_STALENESS" in proc.stderr
    assert "Traceback" not in proc.stderr


APP = """\
import os

from quart import Quart

from revsync import RevSync
from revsync.health import health_blueprint
from revsync.prometheus import metrics_blueprint

app = Quart(__name__)
app.config.update(JWT_SECRET_KEY="k" * 32, JWT_BLACKLIST_ENABLED=True)
# The app's choice: REVSYNC_* from the environment into its config.
app.config.update({k: v for k, v in os.environ.items() if k.startswith("REVSYNC_")})
revsync = RevSync(app)
app.register_blueprint(health_blueprint())
app.register_blueprint(metrics_blueprint(revsync))
"""


def test_quart_cli(installed: Installed, redis_url: str) -> None:
    (installed.work / "cliapp.py").write_text(APP)
    store = f"sqlite:///{installed.work / 'cli.db'}"
    env = _env(
        installed, QUART_APP="cliapp:app", REVSYNC_STORE_URL=store, REVSYNC_REDIS_URL=redis_url
    )
    proc = run([installed.bin("quart"), "revsync", "status"], env=env, cwd=installed.work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"revsync: store {store}" in proc.stdout
    assert "0 live rows" in proc.stdout


def test_a_node_answers_health_and_metrics(installed: Installed, redis_url: str) -> None:
    (installed.work / "nodeapp.py").write_text(APP)
    port = free_port()
    env = _env(
        installed,
        REVSYNC_STORE_URL=f"sqlite:///{installed.work / 'node.db'}",
        REVSYNC_REDIS_URL=redis_url,
    )
    log = (installed.work / "node.log").open("wb")
    proc = subprocess.Popen(
        [installed.bin("hypercorn"), "nodeapp:app", "--bind", f"127.0.0.1:{port}"],
        cwd=installed.work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert answer is not None, (installed.work / "node.log").read_text()
        assert answer.status_code == 200
        assert answer.json()["status"] == "alive"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        assert "revsync_ready 1.0" in metrics
        assert "# TYPE revsync_store_write_duration_seconds histogram" in metrics
    finally:
        end_group(proc)
        log.close()


USER_CODE = """\
from revsync import RevSync


async def logout(revsync: RevSync) -> None:
    seq: str = (await revsync.revoke({"jti": "a", "exp": 1})).seq
"""


def test_mypy_sees_the_types(installed: Installed) -> None:
    (installed.work / "user.py").write_text(USER_CODE)
    proc = run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--python-executable",
            installed.bin("python"),
            "user.py",
        ],
        env=_env(installed),
        cwd=installed.work,
        timeout=180,
    )
    out = proc.stdout + proc.stderr
    # Typed, so the wrong annotation is caught: Change.seq is an int.
    assert 'Incompatible types in assignment (expression has type "int"' in out, out
    assert "missing library stubs or py.typed marker" not in out


def test_prometheus_without_its_extra_names_it(installed: Installed) -> None:
    hide = "import sys; sys.modules['prometheus_client'] = None; import revsync.prometheus"
    proc = run([installed.bin("python"), "-c", hide], env=_env(installed), cwd=installed.work)
    assert proc.returncode == 1
    assert "pip install 'revsync[prometheus]'" in proc.stderr
