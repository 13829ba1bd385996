"""The layers of ``src/offload`` lean the right way and hold no import circle.

Read with ``ast`` (nothing is imported): every ``import`` statement counts, including
those inside functions, except the ones under ``if TYPE_CHECKING:``.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "offload"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def _imports(path: Path, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@cache
def _graph() -> dict[str, set[str]]:
    paths = sorted((SRC / PACKAGE).rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    graph = {_module_name(p): _imports(p, modules) for p in paths}
    # A package's __init__ is imported with any of its modules; that edge is not a circle.
    return {m: {t for t in deps if not m.startswith(t + ".")} for m, deps in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


KNOWN_CIRCLES: list[list[str]] = []


def test_no_import_circle() -> None:
    assert [c for c in _cycles(_graph()) if c not in KNOWN_CIRCLES] == []


@pytest.mark.parametrize(("layer", "forbidden"), [
    ("offload.api", "offload.engine.executor"),
    ("offload.store", "offload.engine"),
    ("offload.store", "offload.api"),
    ("offload.protocol", "offload.engine"),
    ("offload.protocol", "offload.api"),
    ("offload.engine.scheduler", "offload.store.sql"),
])
def test_layers_lean_inward(layer: str, forbidden: str) -> None:
    wrong = {m: sorted(d for d in deps if d == forbidden or d.startswith(forbidden + "."))
             for m, deps in _graph().items() if m == layer or m.startswith(layer + ".")}
    assert {m: d for m, d in wrong.items() if d} == {}


def test_importlib_only_loads_migrations() -> None:
    users = sorted(_module_name(p) for p in (SRC / PACKAGE).rglob("*.py")
                   if "importlib" in _imports(p, {"importlib"}))
    assert users == ["offload.store.migrate"]
