"""`--dry-run`: the order tasks would start in and the exact commands, with nothing run."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mflow.project import Project


def print_plan(
    project: Project,
    tasks: Sequence[str],
    concurrency: int | None,
    done: Collection[str] = frozenset(),
) -> None:
    from mflow import graph
    from mflow.tasks import registry
    from mflow.tasks.base import TaskContext

    wanted = set(tasks)
    order = [t for t in graph.topological_order(project.dag.tasks, project.graph) if t in wanted]
    width = len(str(len(order)))
    slots = concurrency or project.config.max_process_concurrency
    print(
        f"dry run of {project.dag.name} ({project.taskfile_display}): {len(order)} tasks, "
        f"at most {slots} at once; nothing is run"
    )
    env = {**os.environ, "MFLOW_RUN_ID": "0"}
    env.pop("MFLOW_PASSKEY", None)
    for n, task_id in enumerate(order, 1):
        spec = project.dag.tasks[task_id]
        if task_id in done:
            print(f"{n:>{width}}. {task_id} [{spec.type}] already SUCCESS, kept")
            continue
        ctx = TaskContext(
            run_id=0,
            task_id=task_id,
            attempt=1,
            log_path=Path("/dev/null"),
            env=env,
            project=project,
        )
        after = [d for d in spec.depends if d in wanted]
        waits = f" after {', '.join(after)}" if after else ""
        print(f"{n:>{width}}. {task_id} [{spec.type}]{waits}")
        print(f"{' ' * (width + 2)}{registry.get(spec.type).describe(spec, ctx)}")
