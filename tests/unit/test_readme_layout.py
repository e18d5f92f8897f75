"""The README's layout section names what the tree holds."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
LAYOUT = re.search(r"## Layout\n\n```\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def _layout() -> str:
    assert LAYOUT is not None, "README.md has no layout section"
    return LAYOUT.group(1)


def test_every_module_of_the_package_is_named() -> None:
    text = _layout()
    for path in sorted((ROOT / "revsync").glob("*.py")):
        assert path.name in text, path.name
    for path in sorted((ROOT / "revsync" / "stores").glob("*.py")):
        if path.name != "__init__.py":
            assert path.name in text, path.name


def test_every_test_service_and_doc_folder_is_named() -> None:
    text = _layout()
    folders = {
        "tests": [p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and p.name[0] != "_"],
        "services": [
            p.name for p in (ROOT / "services").iterdir() if p.is_dir() and p.name[0] != "_"
        ],
        "docs": [p.stem for p in (ROOT / "docs").glob("*.md")],
    }
    for parent, names in folders.items():
        assert names, parent
        for name in names:
            assert re.search(rf"\b{re.escape(name)}\b", text), f"{parent}/{name}"
