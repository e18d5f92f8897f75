"""services/Dockerfile and .dockerignore, checked statically.

No Docker engine runs where the tests run (the client is installed, the daemon is
not), so the image is never built here: the Dockerfile is parsed into instructions
and what the deployment relies on is asserted (non-root numeric user, a writable
/data that is a volume and holds the default store, a HEALTHCHECK on liveness).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import PurePosixPath

from revsync.stores import store_from_url
from revsync.stores.sqlite import SqliteStore
from tests.conftest import ROOT

DOCKERFILE = ROOT / "services" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, args = line.partition(" ")
        out.append((word.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def _all(name: str) -> list[str]:
    return [args for word, args in _instructions(DOCKERFILE.read_text()) if word == name]


def _last(name: str) -> str:
    found = _all(name)
    assert found, f"no {name} in {DOCKERFILE}"
    return found[-1]


def _env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _all("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def test_runs_as_a_non_root_numeric_user() -> None:
    user = _last("USER")
    uid, _, gid = user.partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without a runAsUser.
    assert uid.isdigit(), user
    assert int(uid) != 0, user
    assert not gid or int(gid) != 0, user
    created = " ".join(_all("RUN"))
    assert f"--uid {uid}" in created
    # Nothing runs as root after USER: every instruction that executes is before it.
    words = [w for w, _ in _instructions(DOCKERFILE.read_text())]
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")


def test_data_directory_is_writable_by_that_user_and_a_volume() -> None:
    uid, _, gid = _last("USER").partition(":")
    runs = " ".join(_all("RUN"))
    assert "mkdir -p /data" in runs
    assert f"chown {uid}:{gid or uid} /data" in runs
    volumes = [json.loads(v) if v.startswith("[") else v.split() for v in _all("VOLUME")]
    assert ["/data"] in volumes
    # The default store is a file in that directory, and revsync reads the URL so.
    url = _env()["REVSYNC_STORE_URL"]
    assert url == "sqlite:////data/revsync.db"
    store = store_from_url(url)
    assert isinstance(store, SqliteStore)
    assert PurePosixPath(store.path) == PurePosixPath("/data/revsync.db")


def test_healthcheck_is_liveness() -> None:
    check = _last("HEALTHCHECK")
    assert check.startswith("--")
    options, _, command = check.partition("CMD ")
    argv = json.loads(command)
    port = int(re.search(r"^EXPOSE (\d+)", DOCKERFILE.read_text(), re.M)[1])  # type: ignore[index]
    probe = " ".join(argv)
    assert f"http://127.0.0.1:{port}/healthz" in probe
    assert "/readyz" not in probe  # readiness must never restart a container
    assert "--timeout=" in options
    assert "--start-period=" in options


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(p, pattern[3:]) for p in parts) or any(
                fnmatch.fnmatch(p, pattern) for p in prefixes
            )
        else:
            hit = any(fnmatch.fnmatch(p, pattern) for p in prefixes)
        if hit:
            ignored = not negate
    return ignored


def _patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = _patterns()
    for args in _all("COPY"):
        sources = [s for s in shlex.split(args)[:-1] if not s.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not _ignored(source, patterns), f"COPY {source} is excluded by .dockerignore"
            for file in (ROOT / source).rglob("*.py") if (ROOT / source).is_dir() else ():
                rel = file.relative_to(ROOT).as_posix()
                if "__pycache__" not in rel:
                    assert not _ignored(rel, patterns), rel


def test_dockerignore_keeps_out_state_and_secrets() -> None:
    patterns = _patterns()
    for path in (
        ".git/config",
        ".venv/bin/python",
        "bench/.venv-qje/bin/python",
        "revsync/__pycache__/config.cpython-311.pyc",
        ".pytest_cache/v/cache",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/x",
        ".hypothesis/examples/x",
        "revsync.db",
        "services/api/revsync.db-wal",
        "bench/results/faults.json",
        "tests/conftest.py",
        ".env",
        "dist/revsync-0.1.0.whl",
    ):
        assert _ignored(path, patterns), path
    assert not _ignored("revsync/stores/lua/range.lua", patterns)
