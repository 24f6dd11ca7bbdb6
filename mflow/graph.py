"""The DAG's structure: dependency checks, cycles with their path, order, selections.

Edges point from a dependency to its dependent (`a -> b`: b depends on a), so a topological
order is a valid run order and `ancestors(t)` is everything t needs.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from mflow.errors import ConfigError, CycleError, GraphError, MissingDependency

if TYPE_CHECKING:
    import networkx as nx

    from mflow.config import TaskSpec


def build(tasks: Mapping[str, TaskSpec]) -> nx.DiGraph:
    """A DiGraph of the tasks; edges to unknown tasks and to the task itself are left out
    (`check` reports them)."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(tasks)
    graph.add_edges_from(
        (dep, task.id)
        for task in tasks.values()
        for dep in task.depends
        if dep in tasks and dep != task.id
    )
    return graph


def _known(names: Iterable[str], limit: int = 10) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return f"known: {shown}, …" if len(names) > limit else f"known: {shown}"


def check(tasks: Mapping[str, TaskSpec], graph: nx.DiGraph | None = None) -> list[ConfigError]:
    """Every unknown dependency, self-dependency and cycle, in file order.

    Needs no networkx graph (building one takes a second for 100,000 tasks); `graph` is
    accepted for callers that have one already.
    """
    problems: list[ConfigError] = []
    waiting: dict[str, int] = {}  # known dependencies, for Kahn's algorithm below
    dependents: dict[str, list[str]] = {}
    for name, task in tasks.items():
        count = 0
        for index, dep in enumerate(task.depends):
            if dep in tasks and dep != name:
                count += 1
                dependents.setdefault(dep, []).append(name)
                continue
            where = {
                "file": task.source.file,
                "json_path": f"{task.source.json_path}.depends[{index}]",
                "task_id": name,
            }
            if dep == name:
                problems.append(GraphError("task depends on itself", **where))
            else:
                problems.append(
                    MissingDependency(f"unknown task '{dep}'", hint=_known(tasks), **where)
                )
        waiting[name] = count
    if _kahn_leftover(waiting, dependents):
        problems.extend(find_cycles(tasks, graph))
    return problems


def _kahn_leftover(waiting: dict[str, int], dependents: Mapping[str, list[str]]) -> set[str]:
    """The tasks Kahn's algorithm cannot order (`waiting` is used up): those in a cycle and
    those downstream of one. Empty when the graph is acyclic."""
    ready = [name for name, count in waiting.items() if count == 0]
    while ready:
        for name in dependents.get(ready.pop(), ()):
            waiting[name] -= 1
            if waiting[name] == 0:
                ready.append(name)
    return {name for name, count in waiting.items() if count}


def _not_sortable(tasks: Mapping[str, TaskSpec]) -> set[str]:
    waiting: dict[str, int] = {}
    dependents: dict[str, list[str]] = {}
    for name, task in tasks.items():
        known = [dep for dep in task.depends if dep in tasks and dep != name]
        for dep in known:
            dependents.setdefault(dep, []).append(name)
        waiting[name] = len(known)
    return _kahn_leftover(waiting, dependents)


def find_cycles(tasks: Mapping[str, TaskSpec], graph: nx.DiGraph | None = None) -> list[CycleError]:
    """One CycleError per strongly connected group of tasks, with one cycle's path."""
    stuck = _not_sortable(tasks)
    if not stuck:  # nearly always: networkx is not even imported
        return []
    import networkx as nx

    order = {name: i for i, name in enumerate(tasks)}
    sub = build({name: tasks[name] for name in stuck}) if graph is None else graph.subgraph(stuck)
    errors = []
    components = [c for c in nx.strongly_connected_components(sub) if len(c) > 1]
    for component in sorted(components, key=lambda c: min(order[n] for n in c)):
        start = min(component, key=order.__getitem__)
        # Walk "depends on" edges, so the path reads the way the file is written.
        edges = nx.find_cycle(sub.subgraph(component).reverse(copy=False), source=start)
        cycle = [u for u, _ in edges]
        first = tasks[cycle[0]]
        index = first.depends.index(cycle[1] if len(cycle) > 1 else cycle[0])
        extra = len(component) - len(cycle)
        errors.append(
            CycleError(
                cycle,
                file=first.source.file,
                json_path=f"{first.source.json_path}.depends[{index}]",
                hint=_more(extra) if extra > 0 else None,
            )
        )
    return errors


def _more(extra: int) -> str:
    return f"{extra} more task{'s are' if extra > 1 else ' is'} in cycles with these"


def topological_order(tasks: Mapping[str, TaskSpec], graph: nx.DiGraph | None = None) -> list[str]:
    """A run order that keeps file order where dependencies allow it: of the tasks whose
    dependencies are all placed, the one first in the file comes next (networkx's
    lexicographical_topological_sort by file position, without the graph: `graph` is not
    needed and only accepted for older callers)."""
    names = list(tasks)
    position = {name: i for i, name in enumerate(names)}
    # Most files list every task after its dependencies: then that rule gives the file
    # order itself, and a pass over the edges finds it (unknown and self edges are ignored).
    if all(
        position.get(dep, -1) <= i for i, name in enumerate(names) for dep in tasks[name].depends
    ):
        return names
    waiting = [0] * len(names)
    dependents: dict[int, list[int]] = {}
    for i, name in enumerate(names):
        for dep in dict.fromkeys(tasks[name].depends):
            if dep in position and dep != name:
                waiting[i] += 1
                dependents.setdefault(position[dep], []).append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]  # already a heap: sorted
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(names[i])
        for j in dependents.get(i, ()):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(names):
        raise ValueError("the DAG has a cycle (graph.check reports it)")
    return order


def upstream(tasks: Mapping[str, TaskSpec], targets: Iterable[str]) -> set[str]:
    """The targets and everything they depend on, transitively (`--target`)."""
    selected: set[str] = set()
    stack = [t for t in targets if t in tasks]
    while stack:
        name = stack.pop()
        if name not in selected:
            selected.add(name)
            stack.extend(d for d in tasks[name].depends if d in tasks)
    return selected


def downstream(tasks: Mapping[str, TaskSpec], sources: Iterable[str]) -> set[str]:
    """The sources and everything that depends on them, transitively (`--resume --from`)."""
    dependents: dict[str, list[str]] = {}
    for task in tasks.values():
        for dep in task.depends:
            dependents.setdefault(dep, []).append(task.id)
    selected: set[str] = set()
    stack = [s for s in sources if s in tasks]
    while stack:
        name = stack.pop()
        if name not in selected:
            selected.add(name)
            stack.extend(dependents.get(name, ()))
    return selected
