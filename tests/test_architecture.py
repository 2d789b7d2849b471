"""The layering the house style promises, checked on the source.

- No import cycle anywhere in the package: every import counts, at module level, inside a
  function or under ``TYPE_CHECKING`` (the leaf types sit below the code that drives them).
- The faces (the CLI, the HTTP API with the viewer and the Twelve Labs routes, and ``eval``)
  reach the store, the indexer and the query layer only through the ``Library`` facade: from
  ``framedex.library`` they import only names in its ``__all__``; besides it they may import
  the shared leaves (the errors, the rule tables, the synthetic-media generator) and each
  other.
- No module imports another's private name, and no face touches a private attribute.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import framedex.library

SRC = Path(__file__).resolve().parents[1] / "src" / "framedex"
FACES = ("framedex.cli", "framedex.api", "framedex.eval")
#: What a face may import besides the facade and the faces: leaves with no layer below them
#: to reach (the error hierarchy, the rule tables every face derives from, the generator of
#: synthetic test media) and the package itself (its version).
SHARED = ("framedex.errors", "framedex.rules", "framedex.synth")


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) of every import in a file: module level, inside
    functions and under ``TYPE_CHECKING`` alike. Relative imports are made absolute."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([module] if module else [])])
            out.append((node.lineno, module, [a.name for a in node.names]))
    return out


def _targets(module: str, names: list[str]) -> set[str]:
    """The package modules an import statement loads: ``from a.b import c`` is ``a.b.c``
    when that is a module, else ``a.b`` (the nearest existing module for a name)."""
    out = set()
    for name in names or [""]:
        full = f"{module}.{name}" if name else module
        while full and full not in MODULES:
            full = full.rpartition(".")[0]
        if full:
            out.add(full)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (itself excluded)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        deps: set[str] = set()
        for _, target, names in _imports(path):
            if target == "framedex" or target.startswith("framedex."):
                deps |= _targets(target, names)
        deps.discard(module)
        graph[module] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of more than one
    module (Tarjan's algorithm, iterative), each sorted, the list sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _cycle_report(graph: dict[str, set[str]], component: list[str]) -> str:
    inside = set(component)
    return "; ".join(f"{m} -> {', '.join(sorted(graph[m] & inside))}" for m in component)


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"},
             "g": {"g"}}
    assert cycles(graph) == [["a", "b", "c"], ["e", "f"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert len(graph) == len(MODULES) > 100
    # a module-level import, one inside a function, one under TYPE_CHECKING
    assert "framedex.store.base" in graph["framedex.query.search"]
    assert "framedex.store.maintenance" in graph["framedex.store.lance_store"]
    assert "framedex.store.tables" in graph["framedex.store.jobs"]


def test_no_import_cycle_anywhere_in_the_package():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles: " + " | ".join(_cycle_report(graph, c) for c in found)


def _face_files() -> list[Path]:
    return sorted(p for m, p in MODULES.items() if m.startswith(FACES))


def test_the_faces_exist():
    names = {p.relative_to(SRC).as_posix() for p in _face_files()}
    assert {"cli/__init__.py", "cli/_common.py", "cli/index.py", "cli/query.py",
            "cli/serve.py", "cli/eval.py", "api/app.py", "eval/runner.py"} <= names


@pytest.mark.parametrize("path", _face_files(), ids=lambda p: p.relative_to(SRC).as_posix())
def test_faces_reach_the_rest_only_through_the_facade(path):
    bad = []
    for line, module, names in _imports(path):
        if not (module == "framedex" or module.startswith("framedex.")):
            continue
        for target in _targets(module, names):
            if target in ("framedex", "framedex.library") or target.startswith(FACES) \
                    or any(target == a or target.startswith(a + ".") for a in SHARED):
                continue
            bad.append(f"{path.relative_to(SRC)}:{line} imports {target}")
        if module == "framedex.library":
            bad += [f"{path.relative_to(SRC)}:{line} imports {n} from framedex.library, "
                    "which is not in its __all__" for n in names
                    if n not in framedex.library.__all__]
    assert not bad, "go through framedex.library (its __all__) instead: " + "; ".join(bad)


@pytest.mark.parametrize("path", _face_files(), ids=lambda p: p.relative_to(SRC).as_posix())
def test_faces_touch_no_private_attribute(path):
    bad = [f"{path.relative_to(SRC)}:{node.lineno} {ast.unparse(node)}"
           for node in ast.walk(ast.parse(path.read_text()))
           if isinstance(node, ast.Attribute) and node.attr.startswith("_")
           and not node.attr.startswith("__")
           and ast.unparse(node.value) not in ("self", "cls")]
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")),
                         ids=lambda p: p.relative_to(SRC).as_posix())
def test_no_private_names_imported_across_modules(path):
    bad = [f"{path.relative_to(SRC)}:{line} imports {name} from {module}"
           for line, module, names in _imports(path) if module.startswith("framedex")
           for name in names if name.startswith("_") and not name.startswith("__")]
    assert not bad, "; ".join(bad)


def test_every_name_in_the_facade_exists():
    missing = [n for n in framedex.library.__all__ if not hasattr(framedex.library, n)]
    assert not missing, missing
