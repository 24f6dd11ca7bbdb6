"""Text for people and tools: DAGs, runs, a run's task tree, a dry run's plan.

The faces' printing lives here (and the live run views in `mflow.console`): the core returns
data (`mflow.queries`, `mflow.dryrun`), these functions show it as a rich table or tree on a
terminal, plain aligned text in a pipe, or JSON.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from typing import IO, TYPE_CHECKING

from mflow.console import STYLE
from mflow.logs import count, seconds, state_label
from mflow.states import RunState, TaskState

if TYPE_CHECKING:
    from mflow.config import Project, TaskSpec
    from mflow.control import PruneResult
    from mflow.dryrun import PlannedTask
    from mflow.plan import RunPlan
    from mflow.queries import RunTree
    from mflow.scheduler.catalog import HistoryRow, JobView
    from mflow.scheduler.cluster import Cluster
    from mflow.state.base import DagSummary, Partition, RunRecord, TaskRecord


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


# ------------------------------------------------------------------------- runs and tasks


def when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def duration(start: float | None, end: float | None, running: bool = False) -> str:
    if start is None:
        return "-"
    if end is None:
        return seconds(time.time() - start) + "…" if running else "-"
    return seconds(end - start)


def run_status(run: RunRecord) -> str:
    """FAILED, or FAILED (owner gone): the state and why, when the run says."""
    return f"{run.status.value} ({run.note})" if run.note else run.status.value


def run_line(run: RunRecord) -> str:
    parent = (
        f"  parent run {run.parent_run_id} task {run.parent_task_id}"
        if run.parent_run_id is not None
        else ""
    )
    took = duration(run.started_at, run.ended_at, run.status is RunState.RUNNING)
    return (
        f"run {run.id} {run.dag} {run_status(run)}  started {when(run.started_at)}  took {took}"
        f"  host {run.host} pid {run.pid}{parent}"
    )


def _task_cells(row: TaskRecord) -> list[str]:
    return [
        row.task_id,
        state_label(row.state.value),
        str(row.attempt),
        duration(row.started_at, row.ended_at, row.state is TaskState.RUNNING),
        "-" if row.exit_code is None else str(row.exit_code),
        row.log_path or "-",
        row.reason or "",
    ]


_HEADERS = ["TASK", "STATE", "ATTEMPT", "DURATION", "EXIT", "LOG", "REASON"]


def _aligned(rows: list[list[str]], indent: str) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        (indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))).rstrip()
        for row in rows
    ]


def print_tree_plain(tree: RunTree, out: IO[str] = sys.stdout, indent: str = "") -> None:
    """The run line, its task table, and under each task the child runs it started."""
    out.write(indent + run_line(tree.run) + "\n")
    if not tree.tasks:
        out.write(indent + "  (no tasks recorded)\n")
        return
    rows = [_task_cells(n.task) for n in tree.tasks]
    headers = _HEADERS
    if not any(row[-1] for row in rows):  # no task has a reason: leave the column out
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    lines = _aligned([headers, *rows], indent + "  ")
    out.write(lines[0] + "\n")
    for node, line in zip(tree.tasks, lines[1:], strict=True):
        out.write(line + "\n")
        for child in node.children:
            print_tree_plain(child, out, indent + "    ")


def print_tree_rich(tree: RunTree) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.tree import Tree

    def table(t: RunTree) -> Table:
        tab = Table(box=None, pad_edge=False, header_style="bold")
        for name in _HEADERS:
            if name == "LOG":  # a path broken in two cannot be copied: never wrap it
                tab.add_column(name.lower(), no_wrap=True, overflow="ignore")
            else:
                tab.add_column(name.lower(), overflow="fold")
        for node in t.tasks:
            cells = _task_cells(node.task)
            tab.add_row(*cells[:1], f"[{STYLE[cells[1]]}]{cells[1]}[/]", *cells[2:])
        return tab

    def build(t: RunTree, parent: Tree | None) -> Tree:
        style = STYLE.get(t.run.status.value, "")
        label = f"[{style}]{run_line(t.run)}[/]"
        node = Tree(label) if parent is None else parent.add(label)
        node.add(table(t))
        for task_node in t.tasks:
            for child in task_node.children:
                build(child, node.add(f"[dim]task {task_node.task.task_id} started:[/]"))
        return node

    # A log path broken over two lines cannot be copied: the table is as wide as its longest
    # line needs (the terminal wraps it softly), never narrower than the terminal.
    plain = io.StringIO()
    print_tree_plain(tree, plain)
    needed = max(map(len, plain.getvalue().splitlines()), default=0) + 8
    console = Console(highlight=False)
    console.width = max(console.width, needed)
    console.print(build(tree, None))


def print_runs(runs: list[RunRecord], *, json_output: bool, tty: bool) -> None:
    if json_output:
        from mflow.queries import record_dict

        print(json.dumps([record_dict(r) for r in runs], indent=2))
        return
    headers = ["RUN", "DAG", "STATUS", "STARTED", "DURATION", "HOST", "PID", "PARENT"]
    rows = [
        [
            str(r.id),
            r.dag,
            run_status(r),
            when(r.started_at),
            duration(r.started_at, r.ended_at, r.status is RunState.RUNNING),
            r.host,
            str(r.pid),
            f"{r.parent_run_id}:{r.parent_task_id}" if r.parent_run_id is not None else "-",
        ]
        for r in runs
    ]
    if rows:
        _table(headers, rows, tty=tty, status_column=2)
    else:
        print("no runs")


# ------------------------------------------------------------------------- a dry run

# Lines are written in blocks: one write per line costs more than building the plan when
# stdout is unbuffered (PYTHONUNBUFFERED, a pipe to `less`...) and the DAG is large.
_BLOCK = 2000


def print_plan(
    plan: RunPlan, tasks: Iterable[PlannedTask], *, json_output: bool, out: IO[str] | None = None
) -> None:
    """A dry run: the heading, then each task in start order with what it would run."""
    from mflow.memory import collector_paused

    out = out or sys.stdout
    with collector_paused():
        if json_output:
            _plan_json(plan, tasks, out)
        else:
            _plan_text(plan, tasks, out)


def _plan_text(plan: RunPlan, tasks: Iterable[PlannedTask], out: IO[str]) -> None:
    project = plan.project
    total = len(plan.tasks)
    width = len(str(total))
    indent = " " * (width + 2)
    lines = [
        f"dry run of {project.dag.name} ({project.taskfile_display}): "
        f"{count(total, 'task')}, at most {plan.concurrency} at once; nothing is run"
    ]
    if plan.previous is not None:
        lines.append(f"resumes run {plan.previous.id} ({plan.previous.status.value})")
        if plan.changes or not plan.changes.recorded:
            lines.append(plan.changes.describe(plan.previous.id))
        if plan.rerun:
            lines.append(f"runs again though SUCCESS: {', '.join(sorted(plan.rerun))}")
    try:
        for task in tasks:
            if task.kept:
                lines.append(
                    f"{task.position:>{width}}. {task.task_id} [{task.type}] already SUCCESS, kept"
                )
                continue
            waits = f" after {', '.join(task.after)}" if task.after else ""
            lines.append(f"{task.position:>{width}}. {task.task_id} [{task.type}]{waits}")
            lines.append(indent + (task.runs or ""))
            if len(lines) >= _BLOCK:
                out.write("\n".join(lines) + "\n")
                lines.clear()
    finally:  # the lines so far, also when a task type fails to describe its task
        if lines:
            out.write("\n".join(lines) + "\n")


def _plan_json(plan: RunPlan, tasks: Iterable[PlannedTask], out: IO[str]) -> None:
    project = plan.project
    document = {
        "dag": project.dag.name,
        "taskfile": str(project.dag.path),
        "resumes": plan.previous.id if plan.previous is not None else None,
        "changes": {
            "added": list(plan.changes.added),
            "removed": list(plan.changes.removed),
            "changed": list(plan.changes.changed),
            "recorded": plan.changes.recorded,
        },
        "rerun": sorted(plan.rerun),
        "concurrency": plan.concurrency,
        "tasks": [
            {
                "position": t.position,
                "id": t.task_id,
                "type": t.type,
                "after": list(t.after),
                "runs": t.runs,
                "kept": t.kept,
            }
            for t in tasks
        ],
    }
    out.write(json.dumps(document, indent=2) + "\n")


# ------------------------------------------------------------------------- dags, prune


def _table(headers: list[str], rows: list[list[str]], *, tty: bool, status_column: int) -> None:
    """Rows as a rich table on a terminal, aligned plain text otherwise."""
    if tty:
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, pad_edge=False, header_style="bold")
        for name in headers:
            table.add_column(name.lower())
        for row in rows:
            state = row[status_column]
            row = list(row)
            row[status_column] = f"[{STYLE.get(state.split()[0], '')}]{state}[/]"
            table.add_row(*row)
        Console(highlight=False).print(table)
    else:
        print("\n".join(_aligned([headers, *rows], "")))


def print_dags(found: list[DagSummary], *, json_output: bool, tty: bool) -> None:
    if json_output:
        from mflow.queries import record_dict

        print(
            json.dumps(
                [
                    {"dag": d.dag, "runs": d.runs, "last_run": record_dict(d.last_run)}
                    for d in found
                ],
                indent=2,
            )
        )
        return
    if not found:
        print("no DAGs: nothing has run in this store yet")
        return
    headers = ["DAG", "RUNS", "LAST RUN", "STATE", "STARTED", "DURATION"]
    rows = [
        [
            d.dag,
            str(d.runs),
            str(d.last_run.id),
            run_status(d.last_run),
            when(d.last_run.started_at),
            duration(
                d.last_run.started_at, d.last_run.ended_at, d.last_run.status is RunState.RUNNING
            ),
        ]
        for d in found
    ]
    _table(headers, rows, tty=tty, status_column=3)


def print_prune(result: PruneResult, *, dry_run: bool, json_output: bool) -> None:
    if json_output:
        print(
            json.dumps(
                {
                    "dry_run": dry_run,
                    "runs": [r.id for r in result.runs],
                    "logs": [str(p) for p in result.logs],
                    "bytes": result.bytes,
                },
                indent=2,
            )
        )
        return
    verb = "would delete" if dry_run else "deleted"
    size = f"{result.bytes / 1e6:.1f} MB" if result.bytes >= 1e5 else f"{result.bytes} bytes"
    print(
        f"{verb} {count(len(result.runs), 'run')} and {count(len(result.logs), 'task log')} "
        f"({size})"
    )
    for run in result.runs:
        print(f"  run {run.id} {run.dag} {run_status(run)}  ended {when(run.ended_at)}")


def print_partitions(found: list[Partition], *, tty: bool) -> None:
    if not found:
        print("no partitions")
        return
    headers = ["DATASET", "DATAID", "STATUS", "JOB", "RUN", "HOST", "UPDATED"]
    rows = [
        [
            p.dataset,
            p.dataid,
            p.status.value,
            p.job or "-",
            str(p.run_id) if p.run_id is not None else "-",
            p.host or "-",
            when(p.updated_at),
        ]
        for p in found
    ]
    _table(headers, rows, tty=tty, status_column=2)


# ------------------------------------------------------------------------- jobs, cluster


def print_jobs(views: list[JobView], *, tty: bool) -> None:
    if not views:
        print("no jobs (mflow jobs add NAME JSON)")
        return
    headers = ["JOB", "SCHEDULE", "TIMEZONE", "ENABLED", "NEXT FIRE", "LAST RUN", "STATE"]
    rows = [
        [
            v.name,
            v.schedule,
            v.timezone,
            "yes" if v.enabled else "paused",
            when(v.next_fire),
            str(v.last_run_id) if v.last_run_id is not None else "-",
            v.last_state or "-",
        ]
        for v in views
    ]
    _table(headers, rows, tty=tty, status_column=6)


def print_history(rows: list[HistoryRow], *, tty: bool) -> None:
    if not rows:
        print("no slots yet")
        return
    headers = ["SLOT", "KIND", "OUTCOME", "REASON", "RUN", "STATE", "HOST"]
    table = [
        [
            when(r.slot),
            r.kind,
            r.outcome,
            (r.reason or "-").splitlines()[0][:120],
            str(r.run_id) if r.run_id is not None else "-",
            r.state or "-",
            r.host or "-",
        ]
        for r in rows
    ]
    _table(headers, table, tty=tty, status_column=5)


def print_cluster(found: Cluster) -> None:
    leader = found.leader
    if leader is None:
        print("leader: none")
    else:
        since = when(leader.since)
        print(f"leader: {leader.holder} on {leader.hostname}, since {since}, epoch {leader.epoch}")
    if not found.members:
        print("members: none")
        return
    print(
        "\n".join(
            _aligned(
                [["MEMBER", "HOST", "PID", "SINCE", "HEARTBEAT"]]
                + [
                    [m.name, m.hostname, str(m.pid), when(m.since), when(m.heartbeat_at)]
                    for m in found.members
                ],
                "",
            )
        )
    )
