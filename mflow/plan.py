"""What a run will do, worked out without changing anything: the tasks, what a resume keeps.

`plan_run` loads the files, chooses the tasks (`--oneshot`, `--target`, a resume), finds the
store and, for a resume (or a child run started again by its parent), reads the earlier run
from it. It only reads: `--dry-run` stops here, so a dry run cannot change the store. Taking
the run (the lock, the rows) is `mflow.run.take_run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mflow.errors import ConfigError, RunNotFound
from mflow.states import TaskState

if TYPE_CHECKING:
    from mflow.config import Project
    from mflow.state import StoreLocation
    from mflow.state.base import RunRecord, StateStore, TaskRecord


@dataclass(frozen=True)
class RunRequest:
    """What was asked for: the files, the selection, how to run. Plain values only, so that
    every face (the CLI, the scheduler, the HTTP API) builds one the same way."""

    config: Path | None = None
    taskfile: Path | None = None
    datasources: Path | None = None
    concurrency: int | None = None
    resume: str | None = None  # a run id, or "last"
    oneshot: str | None = None
    target: str | None = None
    fail_fast: bool = False
    allow_concurrent: bool = False
    state: str | None = None
    log_dir: Path | None = None
    parent: str | None = None  # "RUN_ID:TASK_ID" for child runs


@dataclass(frozen=True)
class RunPlan:
    """The tasks a run considers (in start-priority order) and what a resumed run has done."""

    project: Project
    request: RunRequest
    tasks: tuple[str, ...]
    log_dir: Path
    location: StoreLocation
    concurrency: int
    done: frozenset[str] = frozenset()
    attempts: Mapping[str, int] = field(default_factory=dict)
    previous: RunRecord | None = None  # the run this one continues
    previous_tasks: tuple[TaskRecord, ...] = ()
    parent: tuple[int, str] | None = None

    @property
    def resumes(self) -> bool:
        return self.previous is not None


def usage(message: str, hint: str | None = None) -> ConfigError:
    """A wrong option or combination of options (exit 2)."""
    return ConfigError(message, json_path="", hint=hint)


def load(request: RunRequest) -> Project:
    """The request's files, loaded and checked (raises InvalidInput)."""
    from mflow.project import load_project

    if request.resume and (request.oneshot or request.target):
        raise usage(
            "--resume continues a run as it was; it cannot be combined with --oneshot or --target"
        )
    if request.oneshot and request.target:
        raise usage("--oneshot and --target choose the tasks in different ways: give one")
    return load_project(request.config, request.taskfile, request.datasources)


def select_tasks(project: Project, request: RunRequest) -> tuple[str, ...]:
    """The tasks of this run in file order: all, `--target` and its upstream, or `--oneshot`."""
    tasks = project.dag.tasks
    for flag, name in (("--oneshot", request.oneshot), ("--target", request.target)):
        if name is not None and name not in tasks:
            known = ", ".join(list(tasks)[:10]) + (", …" if len(tasks) > 10 else "")
            raise usage(
                f"{flag}: unknown task '{name}' in {project.taskfile_display}", f"known: {known}"
            )
    if request.oneshot:
        return (request.oneshot,)
    if request.target:
        from mflow import graph

        wanted = graph.upstream(tasks, [request.target])
        return tuple(t for t in tasks if t in wanted)
    return tuple(tasks)


def parse_parent(value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    run, _, task = value.partition(":")
    if not run.isdigit() or not task:
        raise usage(f"--parent must be RUN_ID:TASK_ID, got '{value}'")
    return int(run), task


def locate_store(project: Project, request: RunRequest) -> StoreLocation:
    from mflow.state import locate

    return locate(request.state, project.config.state, project.datasources)


def reads_store(request: RunRequest) -> bool:
    """Whether planning this request needs the store (to find the run it continues)."""
    return bool(request.resume or request.parent)


def plan_run(project: Project, request: RunRequest, store: StateStore | None) -> RunPlan:
    """The plan of the request's run; reads the store (for a resume), writes nothing. `store`
    may be None when `reads_store(request)` is false."""
    selected = select_tasks(project, request)
    parent = parse_parent(request.parent)
    plan = RunPlan(
        project=project,
        request=request,
        tasks=selected,
        log_dir=Path(request.log_dir or project.config.log_directory).resolve(),
        location=locate_store(project, request),
        concurrency=request.concurrency or project.config.max_process_concurrency,
        parent=parent,
    )
    previous = _run_to_resume(store, project, request, parent) if store is not None else None
    if previous is None:
        return plan
    assert store is not None
    rows = store.tasks(previous.id)
    known = {r.task_id: r for r in rows}
    tasks = tuple(t for t in project.dag.tasks if t in known) or selected
    done = frozenset(t for t in tasks if t in known and known[t].state is TaskState.SUCCESS)
    attempts = {t: known[t].attempt for t in tasks if t in known}
    return RunPlan(
        project=project,
        request=request,
        tasks=tasks,
        log_dir=plan.log_dir,
        location=plan.location,
        concurrency=plan.concurrency,
        done=done,
        attempts=attempts,
        previous=previous,
        previous_tasks=tuple(rows),
        parent=parent,
    )


def _run_to_resume(
    store: StateStore, project: Project, request: RunRequest, parent: tuple[int, str] | None
) -> RunRecord | None:
    if request.resume:
        if request.resume == "last":
            run = store.latest_run(project.dag.name)
            if run is None:
                raise RunNotFound(
                    f"--resume last: DAG '{project.dag.name}' has no run to resume "
                    f"in {store.display_url}"
                )
        else:
            if not request.resume.isdigit():
                raise usage(f"--resume takes a run id or 'last', got '{request.resume}'")
            run = store.get_run(int(request.resume))
        if run.dag != project.dag.name:
            raise usage(
                f"--resume {request.resume}: run {run.id} is of DAG '{run.dag}', "
                f"not '{project.dag.name}' ({project.taskfile_display})"
            )
        return run
    if parent is not None:
        # A child run started again by its parent (a retry, a resumed parent) continues the
        # child run it started before, so nothing that succeeded runs twice.
        mine = [r for r in store.child_runs(parent[0]) if r.parent_task_id == parent[1]]
        if mine:
            return mine[-1]
    return None
