"""Variant (d): quart-jwt-extended 0.1.0 running the seed program unchanged.

Runs in bench/.venv-qje (see bench/qje.py), never in the project's environment.
services/seed_example/app.py differs from quart-jwt-extended's blacklist example
only by its import line (``revsync.jwt``), so this module makes that name resolve
to ``quart_jwt_extended`` and imports the file as it is.  The seed's in-memory
blacklist gets ``BENCH_BLACKLIST_SIZE`` jtis, as (a)'s set has.
"""

from __future__ import annotations

import os
import sys
import types
import uuid
from pathlib import Path

import quart_jwt_extended

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
_package = types.ModuleType("revsync")
_package.__path__ = []
sys.modules["revsync"] = _package
sys.modules["revsync.jwt"] = quart_jwt_extended

from services.seed_example.app import app, blacklist  # noqa: E402 - after the alias above

blacklist.update(str(uuid.uuid4()) for _ in range(int(os.environ.get("BENCH_BLACKLIST_SIZE", "0"))))
__all__ = ["app"]
