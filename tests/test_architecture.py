"""The layering the house style promises, checked on the source: the CLI and the HTTP API
(including the viewer and the Twelve Labs routes) reach the store, the indexer and the query
layer only through the ``Library`` facade."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "framedex"
FACES = ("cli", "api")
INTERNALS = ("framedex.store", "framedex.indexer", "framedex.query")


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) of every import in a file, nested ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
    return out


def _face_files() -> list[Path]:
    return sorted(p for face in FACES for p in (SRC / face).rglob("*.py"))


def test_the_faces_exist():
    names = {p.relative_to(SRC).as_posix() for p in _face_files()}
    assert {"cli/__init__.py", "cli/_common.py", "cli/index.py", "cli/query.py",
            "cli/serve.py", "cli/eval.py", "api/app.py"} <= names


@pytest.mark.parametrize("path", _face_files(), ids=lambda p: p.relative_to(SRC).as_posix())
def test_faces_import_no_internals(path):
    bad = [f"{path.relative_to(SRC)}:{line} imports {module}"
           for line, module, _ in _imports(path)
           if module.startswith(INTERNALS)]
    assert not bad, "go through framedex.library instead: " + "; ".join(bad)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")),
                         ids=lambda p: p.relative_to(SRC).as_posix())
def test_no_private_names_imported_across_modules(path):
    bad = [f"{path.relative_to(SRC)}:{line} imports {name} from {module}"
           for line, module, names in _imports(path) if module.startswith("framedex")
           for name in names if name.startswith("_") and not name.startswith("__")]
    assert not bad, "; ".join(bad)


def test_the_cli_package_has_no_import_cycle():
    graph: dict[str, set[str]] = {}
    for path in (SRC / "cli").glob("*.py"):
        mod = "framedex.cli" if path.stem == "__init__" else f"framedex.cli.{path.stem}"
        graph[mod] = {m for _, m, _ in _imports(path) if m.startswith("framedex.cli.")}
    # __init__ imports the command modules; none of them may import the package back
    for mod, deps in graph.items():
        if mod != "framedex.cli":
            assert "framedex.cli" not in deps and all(
                mod not in graph.get(d, set()) for d in deps), (mod, deps)
