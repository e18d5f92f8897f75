"""bench/.venv-qje: quart-jwt-extended 0.1.0 in a virtualenv of its own.

quart-jwt-extended 0.1.0 requires Quart>=0.18, Werkzeug>=2.2, PyJWT>2.2 and six;
it is a bench-only dependency and never enters the project's environment.  The
virtualenv is made from the interpreter running the bench, on first use.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venv-qje"
PACKAGES = ["quart-jwt-extended==0.1.0", "hypercorn"]


def python() -> str:
    """The venv's interpreter, creating the venv if needed; RuntimeError if impossible."""
    exe = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if not stamp.exists():
        base = getattr(sys, "_base_executable", sys.executable)
        try:
            subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True)
            subprocess.run(
                [str(exe), "-m", "pip", "install", "--quiet", *PACKAGES],
                check=True,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as exc:
            msg = f"cannot install {' '.join(PACKAGES)}: {(exc.stderr or '').strip()[-800:]}"
            raise RuntimeError(msg) from None
        stamp.write_text("\n".join(PACKAGES) + "\n")
    return str(exe)


def versions(exe: str) -> dict[str, str]:
    """Versions of the packages that matter in the venv."""
    code = (
        "import importlib.metadata as m, json, sys;"
        "names = ['quart-jwt-extended', 'quart', 'werkzeug', 'pyjwt', 'six', 'hypercorn'];"
        "print(json.dumps({n: m.version(n) for n in names}))"
    )
    out = subprocess.run([exe, "-c", code], capture_output=True, text=True, check=True).stdout
    import json

    result: dict[str, str] = json.loads(out)
    result["python"] = subprocess.run(
        [exe, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return result
