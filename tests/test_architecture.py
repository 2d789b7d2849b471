"""Layering: the faces (``api/``, ``cli/``) talk only to the ``Library`` facade.

No module under ``src/framedex/api/`` or ``src/framedex/cli/`` imports ``framedex.store``,
``framedex.indexer`` or ``framedex.query`` (at module level or inside a function): what a
route or a command needs is a method of :class:`framedex.library.Library`, validated there.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "framedex"
FORBIDDEN = ("framedex.store", "framedex.indexer", "framedex.query")
FACES = sorted([*(SRC / "api").rglob("*.py"), *(SRC / "cli").rglob("*.py")])


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return out


def test_faces_exist():
    assert any(p.parts[-3:-1] == ("api", "twelvelabs") for p in FACES)


@pytest.mark.parametrize("path", FACES, ids=lambda p: str(p.relative_to(SRC)))
def test_faces_import_only_the_library(path):
    bad = [f"line {line}: {name}" for line, name in imported_modules(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"{path.relative_to(SRC)} reaches past the Library facade: {bad}"
