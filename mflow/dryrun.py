"""`--dry-run`: the order tasks would start in and the exact commands, with nothing run."""

from __future__ import annotations

import sys
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from mflow.logs import count

if TYPE_CHECKING:
    from mflow.config import Project

# Lines are written in blocks: one write per line costs more than building the plan when
# stdout is unbuffered (PYTHONUNBUFFERED, a pipe to `less`...) and the DAG is large.
_BLOCK = 2000


def print_plan(
    project: Project,
    tasks: Sequence[str],
    concurrency: int | None,
    done: Collection[str] = frozenset(),
    out: TextIO | None = None,
) -> None:
    """Print the tasks in start order, each with what it would run (`describe`)."""
    from mflow.project import collector_paused

    with collector_paused():
        _print_plan(project, tasks, concurrency, done, out or sys.stdout)


def _print_plan(
    project: Project,
    tasks: Sequence[str],
    concurrency: int | None,
    done: Collection[str],
    out: TextIO,
) -> None:
    from mflow import graph, taskenv
    from mflow.tasks import registry
    from mflow.tasks.base import TaskContext

    specs = project.dag.tasks
    wanted = set(tasks)
    everything = len(wanted) == len(specs)  # then every dependency is in the plan (validated)
    # No networkx graph: building one would take longer than the whole plan.
    order = [t for t in graph.topological_order(specs) if t in wanted]
    width = len(str(len(order)))
    indent = " " * (width + 2)
    slots = concurrency or project.config.max_process_concurrency
    lines = [
        f"dry run of {project.dag.name} ({project.taskfile_display}): {count(len(order), 'task')}, "
        f"at most {slots} at once; nothing is run"
    ]
    base = taskenv.base_env(project, 0, project.config.log_directory)
    # Shared by every task's context: nothing runs, so nothing is logged or cancelled.
    log_path = Path("/dev/null")
    cancelled = threading.Event()
    try:
        for n, task_id in enumerate(order, 1):
            spec = specs[task_id]
            if task_id in done:
                lines.append(f"{n:>{width}}. {task_id} [{spec.type}] already SUCCESS, kept")
                continue
            ctx = TaskContext(
                run_id=0,
                task_id=task_id,
                attempt=1,
                log_path=log_path,
                env=taskenv.task_env(base, spec, 1) if spec.env else base,
                project=project,
                cancelled=cancelled,
            )
            after = spec.depends if everything else [d for d in spec.depends if d in wanted]
            waits = f" after {', '.join(after)}" if after else ""
            lines.append(f"{n:>{width}}. {task_id} [{spec.type}]{waits}")
            lines.append(indent + registry.get(spec.type).describe(spec, ctx))
            if len(lines) >= _BLOCK:
                out.write("\n".join(lines) + "\n")
                lines.clear()
    finally:  # the lines so far, also when a task type fails to describe its task
        if lines:
            out.write("\n".join(lines) + "\n")
