"""Issue 16 attack 1 (Lua): the Redis store's scripts now live in files
(revsync/stores/lua/*.lua, read through importlib.resources).  A store whose script
files are missing, unreadable or damaged must fail at start-up (building or
connecting the store) with an error that names the file, never at its first write.

Each case runs in a subprocess on a copy of the package with one file damaged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT

_PROBE = """
import asyncio, json, sys, traceback

async def main(url):
    stage = "build"
    try:
        from revsync.stores import store_from_url
        from revsync.changes import ChangeRequest, Kind
        store = store_from_url(url)
        stage = "connect"
        await store.connect()
        try:
            stage = "write"
            await store.write(ChangeRequest(Kind.JTI, "k", True, 2e9, "a"))
            stage = "read"
            await store.since(0)
            stage = "ok"
        finally:
            await store.close()
        return {"stage": "ok"}
    except BaseException as exc:
        return {"stage": stage, "error": f"{type(exc).__name__}: {exc}",
                "lines": len(traceback.format_exc().splitlines())}

print(json.dumps(asyncio.run(main(sys.argv[1]))))
"""


def _missing(path: Path) -> None:
    path.unlink()


def _directory(path: Path) -> None:  # unreadable as a file (tests run as root: no chmod)
    path.unlink()
    path.mkdir()


def _not_utf8(path: Path) -> None:
    path.write_bytes(b"\xff\xfe" + path.read_bytes())


def _empty(path: Path) -> None:  # truncated by a bad copy or a full disk
    path.write_text("")


def _syntax(path: Path) -> None:
    path.write_text(path.read_text()[: len(path.read_text()) // 2])


def probe(tmp_path: Path, redis_url: str, damage: Callable[[Path], None], name: str) -> dict:
    copy = tmp_path / "pkg"
    shutil.copytree(
        ROOT / "revsync", copy / "revsync", ignore=shutil.ignore_patterns("__pycache__")
    )
    damage(copy / "revsync" / "stores" / "lua" / f"{name}.lua")
    env = {**os.environ, "PYTHONPATH": str(copy)}
    url = f"{redis_url}?prefix=lua-{uuid.uuid4().hex[:8]}"
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    result: dict = json.loads(out.splitlines()[-1])
    return result


def test_the_probe_writes_with_intact_files(tmp_path: Path, redis_url: str) -> None:
    assert probe(tmp_path, redis_url, lambda p: None, "write") == {"stage": "ok"}


@pytest.mark.parametrize("damage", [_missing, _directory, _not_utf8])
@pytest.mark.parametrize("name", ["write", "rows", "range"])
def test_unreadable_script_fails_at_start_up_naming_the_file(
    tmp_path: Path, redis_url: str, damage: Callable[[Path], None], name: str
) -> None:
    result = probe(tmp_path, redis_url, damage, name)
    assert result["stage"] in {"build", "connect"}, result
    assert f"{name}.lua" in result["error"], result


@pytest.mark.parametrize("damage", [_empty, _syntax])
@pytest.mark.parametrize("name", ["write", "range"])
def test_damaged_script_fails_at_start_up(
    tmp_path: Path, redis_url: str, damage: Callable[[Path], None], name: str
) -> None:
    # Readable but damaged: the file is read at import, the script reaches Redis only
    # at the first EVALSHA.  connect() could SCRIPT LOAD every script and fail there.
    result = probe(tmp_path, redis_url, damage, name)
    assert result["stage"] in {"build", "connect"}, result
