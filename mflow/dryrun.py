"""`--dry-run`: the order tasks would start in and what each would run, with nothing run.

`planned_tasks` turns a `RunPlan` into `PlannedTask`s (data); the faces print them
(`mflow.render.print_plan`). A generator: a 100,000-task plan is printed as it is worked out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mflow.plan import RunPlan


@dataclass(frozen=True, slots=True)
class PlannedTask:
    position: int  # 1-based start order
    task_id: str
    type: str
    after: tuple[str, ...]  # the dependencies within the plan
    runs: str | None  # what it would run, exactly (secrets left out); None when kept
    kept: bool = False  # a resumed run's SUCCESS, not run again


def planned_tasks(plan: RunPlan) -> Iterator[PlannedTask]:
    """The plan's tasks in start order, each with what it would run (`describe`)."""
    from mflow import graph, taskenv
    from mflow.tasks import registry
    from mflow.tasks.base import TaskContext

    project = plan.project
    specs = project.dag.tasks
    wanted = set(plan.tasks)
    everything = len(wanted) == len(specs)  # then every dependency is in the plan (validated)
    # No networkx graph: building one would take longer than the whole plan.
    order = [t for t in graph.topological_order(specs) if t in wanted]
    base = taskenv.base_env(project, 0, plan.log_dir)
    # Shared by every task's context: nothing runs, so nothing is logged or cancelled.
    log_path = Path("/dev/null")
    cancelled = threading.Event()
    for n, task_id in enumerate(order, 1):
        spec = specs[task_id]
        after = spec.depends if everything else tuple(d for d in spec.depends if d in wanted)
        if task_id in plan.done:
            yield PlannedTask(n, task_id, spec.type, tuple(after), None, kept=True)
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
        runs = registry.get(spec.type).describe(spec, ctx)
        yield PlannedTask(n, task_id, spec.type, tuple(after), runs)
