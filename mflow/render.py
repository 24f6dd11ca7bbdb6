"""Showing a DAG: a rich tree for people, Graphviz DOT and JSON for tools."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from mflow.logs import count

if TYPE_CHECKING:
    from mflow.config import Project, TaskSpec


def _depends(spec: TaskSpec) -> list[str]:
    """The task's dependencies, each once (a file may list one twice)."""
    return list(dict.fromkeys(spec.depends))


def _dependents(project: Project) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in project.dag.tasks}
    for task in project.dag.tasks.values():
        for dep in _depends(task):
            out[dep].append(task.id)
    return out


def print_tree(project: Project) -> None:
    """Roots first, each task under the tasks it depends on; a task reached again by another
    path is shown once more by name only, marked `(above)`."""
    from rich.console import Console
    from rich.markup import escape
    from rich.tree import Tree

    dag = project.dag
    dependents = _dependents(project)
    heading = f"{count(len(dag.tasks), 'task')}, {count(dag.edges, 'edge')}"
    root = Tree(f"[bold]{escape(dag.name)}[/] ({heading})")
    shown: set[str] = set()
    # Depth first with an explicit stack: a chain of thousands of tasks is no recursion limit.
    stack = [(root, name) for name, spec in reversed(dag.tasks.items()) if not spec.depends]
    while stack:
        parent, name = stack.pop()
        if name in shown:
            parent.add(f"{escape(name)} [dim](above)[/]")
            continue
        shown.add(name)
        waits = _depends(dag.tasks[name])
        also = f" [dim]also after {', '.join(map(escape, waits[1:]))}[/]" if len(waits) > 1 else ""
        node = parent.add(f"[cyan]{escape(name)}[/] [dim]{escape(dag.tasks[name].type)}[/]{also}")
        stack.extend((node, child) for child in reversed(dependents[name]))
    Console(highlight=False).print(root)


def _dot_id(name: str) -> str:
    return json.dumps(name)


def dot(project: Project) -> str:
    dag = project.dag
    lines = [f"digraph {_dot_id(dag.name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    for name, spec in dag.tasks.items():
        label = _dot_id(name + "\n" + spec.type)
        lines.append(f"  {_dot_id(name)} [label={label}];")
    for name, spec in dag.tasks.items():
        for dep in _depends(spec):
            lines.append(f"  {_dot_id(dep)} -> {_dot_id(name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def graph_json(project: Project) -> str:
    dag = project.dag
    return json.dumps(
        {
            "name": dag.name,
            "taskfile": str(dag.path),
            "nodes": [
                {"id": name, "type": spec.type, "depends": _depends(spec)}
                for name, spec in dag.tasks.items()
            ],
            "edges": [
                {"from": dep, "to": name}
                for name, spec in dag.tasks.items()
                for dep in _depends(spec)
            ],
        },
        indent=2,
    )
