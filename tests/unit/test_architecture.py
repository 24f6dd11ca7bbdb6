"""The import rules that keep mflow's layers apart, checked on the source with `ast`.

Every import counts: at module level, inside functions, and under `if TYPE_CHECKING`. The core
never imports the CLI (typer, mflow.cli): the scheduler and the HTTP API call the same core.
Task types never import the state store; the store never imports what runs tasks. No module
imports itself back through others.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mflow"
FACES = {"mflow.cli", "mflow.__main__"}  # where the CLI lives (mflow.cli: a package)
RUNNING = {"mflow.runner", "mflow.run", "mflow.plan", "mflow.executors"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(name: str) -> Iterator[str]:
    """Every name `name`'s module imports (absolute, as written or resolved)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def own_modules(name: str) -> set[str]:
    """The mflow modules `name` imports (`from mflow import x` counts as mflow.x)."""
    found = set()
    for target in imported(name):
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def within(name: str, prefixes: set[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_package_is_found() -> None:
    assert {"mflow.cli", "mflow.runner", "mflow.state.sql", "mflow.tasks.shell"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if not within(n, FACES)))
def test_the_core_never_imports_the_cli(name: str) -> None:
    bad = {i for i in imported(name) if within(i, {"typer", "click", *FACES})}
    assert not bad, f"{name} imports {sorted(bad)}: only mflow.cli parses the command line"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if within(n, {"mflow.tasks"})))
def test_task_types_never_import_the_state_store(name: str) -> None:
    bad = {i for i in own_modules(name) if within(i, {"mflow.state"})}
    assert not bad, f"{name} imports {sorted(bad)}: a task type does not know where state is kept"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if within(n, {"mflow.state"})))
def test_the_store_never_imports_what_runs_tasks(name: str) -> None:
    bad = {i for i in own_modules(name) if within(i, RUNNING | {"mflow.tasks"})}
    assert not bad, f"{name} imports {sorted(bad)}: the store keeps state, it does not run"


def test_no_import_circle() -> None:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for name in MODULES:
        # A package's __init__ importing its own submodules is not a circle of concepts.
        graph.add_edges_from((name, t) for t in own_modules(name) if not t.startswith(name + "."))
    circles = [" -> ".join([*c, c[0]]) for c in nx.simple_cycles(graph)]
    assert not circles, "import circles:\n" + "\n".join(sorted(circles))
