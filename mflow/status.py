"""What operators ask the store: recent runs, a run's tasks (child runs nested), a task's log.

Each query builds plain data first (`RunTree`), then shows it three ways: a rich table or tree
on a terminal, plain text in a pipe, JSON for tools.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from mflow.logs import seconds
from mflow.state.base import RunRecord, StateStore, TaskRecord, is_stale
from mflow.states import TERMINAL, RunState, TaskState

_TASK_ORDER = {
    TaskState.SUCCESS: 0,
    TaskState.FAILED: 0,
    TaskState.CANCELLED: 0,
    TaskState.RUNNING: 1,
    TaskState.UPSTREAM_FAILED: 2,
    TaskState.NONE: 3,
}


@dataclass
class TaskNode:
    task: TaskRecord
    children: list[RunTree] = field(default_factory=list)


@dataclass
class RunTree:
    run: RunRecord
    tasks: list[TaskNode]


def run_tree(store: StateStore, run: RunRecord, depth: int = 0) -> RunTree:
    """The run, its tasks in the order they ran, each with the child runs it started."""
    rows = sorted(
        store.tasks(run.id),
        key=lambda r: (_TASK_ORDER[r.state], r.started_at or 0.0, r.task_id),
    )
    by_task: dict[str, list[RunRecord]] = {}
    if depth < 20:  # a guard against a corrupt store pointing in circles
        for child in store.child_runs(run.id):
            by_task.setdefault(child.parent_task_id or "", []).append(child)
    nodes = [
        TaskNode(row, [run_tree(store, c, depth + 1) for c in by_task.get(row.task_id, [])])
        for row in rows
    ]
    return RunTree(run, nodes)


# ------------------------------------------------------------------------- formatting


def when(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def duration(start: float | None, end: float | None, running: bool = False) -> str:
    if start is None:
        return "-"
    if end is None:
        return seconds(time.time() - start) + "…" if running else "-"
    return seconds(end - start)


def run_line(run: RunRecord) -> str:
    parent = (
        f"  parent run {run.parent_run_id} task {run.parent_task_id}"
        if run.parent_run_id is not None
        else ""
    )
    took = duration(run.started_at, run.ended_at, run.status is RunState.RUNNING)
    return (
        f"run {run.id} {run.dag} {run.status}  started {when(run.started_at)}  took {took}"
        f"  host {run.host} pid {run.pid}{parent}"
    )


def _task_cells(row: TaskRecord) -> list[str]:
    return [
        row.task_id,
        row.state.value,
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


_STYLE = {
    "SUCCESS": "green",
    "FAILED": "bold red",
    "UPSTREAM_FAILED": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "NONE": "dim",
}


def print_tree_rich(tree: RunTree) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.tree import Tree

    def table(t: RunTree) -> Table:
        tab = Table(box=None, pad_edge=False, header_style="bold")
        for name in _HEADERS:
            tab.add_column(name.lower(), overflow="fold")
        for node in t.tasks:
            cells = _task_cells(node.task)
            tab.add_row(*cells[:1], f"[{_STYLE[cells[1]]}]{cells[1]}[/]", *cells[2:])
        return tab

    def build(t: RunTree, parent: Tree | None) -> Tree:
        style = _STYLE.get(t.run.status.value, "")
        label = f"[{style}]{run_line(t.run)}[/]"
        node = Tree(label) if parent is None else parent.add(label)
        node.add(table(t))
        for task_node in t.tasks:
            for child in task_node.children:
                build(child, node.add(f"[dim]task {task_node.task.task_id} started:[/]"))
        return node

    Console(highlight=False).print(build(tree, None))


def tree_dict(tree: RunTree) -> dict[str, Any]:
    return {
        "run": record_dict(tree.run),
        "tasks": [
            {**record_dict(n.task), "children": [tree_dict(c) for c in n.children]}
            for n in tree.tasks
        ],
    }


def record_dict(record: RunRecord | TaskRecord) -> dict[str, Any]:
    data = asdict(record)
    for key, value in data.items():
        if isinstance(value, RunState | TaskState):
            data[key] = value.value
    return data


def print_runs(runs: list[RunRecord], *, json_output: bool, tty: bool) -> None:
    if json_output:
        print(json.dumps([record_dict(r) for r in runs], indent=2))
        return
    headers = ["RUN", "DAG", "STATUS", "STARTED", "DURATION", "HOST", "PID", "PARENT"]
    rows = [
        [
            str(r.id),
            r.dag,
            r.status.value,
            when(r.started_at),
            duration(r.started_at, r.ended_at, r.status is RunState.RUNNING),
            r.host,
            str(r.pid),
            f"{r.parent_run_id}:{r.parent_task_id}" if r.parent_run_id is not None else "-",
        ]
        for r in runs
    ]
    if tty:
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, pad_edge=False, header_style="bold")
        for name in headers:
            table.add_column(name.lower())
        for row in rows:
            table.add_row(*row[:2], f"[{_STYLE[row[2]]}]{row[2]}[/]", *row[3:])
        Console(highlight=False).print(table)
    elif rows:
        print("\n".join(_aligned([headers, *rows], "")))
    else:
        print("no runs")


def follow_log(
    store: StateStore, run_id: int, task: TaskRecord, out: IO[str], poll: float = 0.5
) -> RunRecord:
    """Print the task log as it grows until the task has ended and the file stops growing.

    A task has ended when its row is in a final state with no retry to come, or when its run
    has ended or been abandoned (its mflow killed: the store still says RUNNING, but
    `is_stale`). The file is read once more after that is seen: the task may have written its
    last lines between the previous read and the look at the store. Returns the run as last
    seen, for the caller to tell an abandoned run from an ended task.
    """
    path = Path(task.log_path) if task.log_path else None
    position = 0
    run: RunRecord | None = None
    while True:
        if path is not None and path.exists():
            with path.open("r", encoding="utf-8", errors="replace") as f:
                f.seek(position)
                chunk = f.read()
                position = f.tell()
            if chunk:
                out.write(chunk)
                out.flush()
                continue
        if run is not None:
            return run
        row = next((r for r in store.tasks(run_id) if r.task_id == task.task_id), task)
        if path is None and row.log_path:
            path = Path(row.log_path)
            continue
        current = store.get_run(run_id)
        if is_stale(current) or (row.state in TERMINAL and not _retrying(row)):
            run = current
        else:
            time.sleep(poll)


def _retrying(row: TaskRecord) -> bool:
    """A failed attempt with another to come: the store keeps it as FAILED with the reason
    "...; retrying" (mflow.state.writer.StoreWriter) until the next attempt starts."""
    return row.state is TaskState.FAILED and (row.reason or "").endswith("retrying")
