"""One `mflow run`: load the project, choose the tasks, open the store, take the run, run it.

This is the glue between the CLI and the runner: what to run (`--oneshot`, `--target`,
`--resume`, a child run's parent), where to record it, who listens, and what exit code the
outcome means.
"""

from __future__ import annotations

import gc
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mflow.errors import ConfigError, ExitCode, RunNotFound
from mflow.events import Listeners
from mflow.states import TaskState

if TYPE_CHECKING:
    from mflow.config import Project
    from mflow.runner import Plan
    from mflow.state import StoreLocation
    from mflow.state.base import RunRecord, StateStore, TaskRecord


@dataclass(frozen=True)
class RunOptions:
    config: Path | None = None
    taskfile: Path | None = None
    datasources: Path | None = None
    concurrency: int | None = None
    resume: str | None = None
    oneshot: str | None = None
    target: str | None = None
    fail_fast: bool = False
    dry_run: bool = False
    allow_concurrent: bool = False
    state: str | None = None
    log_dir: Path | None = None
    quiet: bool = False
    json: bool = False
    parent: str | None = None  # "RUN_ID:TASK_ID" for child runs


def _usage(message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(message, json_path="", hint=hint)


def select_tasks(project: Project, options: RunOptions) -> tuple[str, ...]:
    """The tasks of this run in file order: all, `--target` and its upstream, or `--oneshot`."""
    tasks = project.dag.tasks
    for flag, name in (("--oneshot", options.oneshot), ("--target", options.target)):
        if name is not None and name not in tasks:
            known = ", ".join(list(tasks)[:10]) + (", …" if len(tasks) > 10 else "")
            raise _usage(
                f"{flag}: unknown task '{name}' in {project.taskfile_display}", f"known: {known}"
            )
    if options.oneshot:
        return (options.oneshot,)
    if options.target:
        from mflow import graph

        wanted = graph.upstream(project.dag.tasks, [options.target])
        return tuple(t for t in tasks if t in wanted)
    return tuple(tasks)


def _parse_parent(value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    run, _, task = value.partition(":")
    if not run.isdigit() or not task:
        raise _usage(f"--parent must be RUN_ID:TASK_ID, got '{value}'")
    return int(run), task


def resume_command(project: Project, options: RunOptions, run_id: int) -> str:
    from mflow.state import mask_url

    argv = ["mflow"]
    for flag, value in (
        ("--config", options.config),
        ("--taskfile", options.taskfile),
        ("--datasources", options.datasources),
    ):
        if value is not None:
            argv += [flag, str(value)]
    if options.state:
        argv += ["--state", mask_url(options.state)]
    if options.log_dir:
        argv += ["--log-dir", str(options.log_dir)]
    return shlex.join([*argv, "--resume", str(run_id)])


def execute(options: RunOptions) -> ExitCode:
    """Run the DAG as the options say; return the exit code. Raises MflowError for bad input."""
    from mflow.project import load_project

    if options.resume and (options.oneshot or options.target):
        raise _usage(
            "--resume continues a run as it was; it cannot be combined with --oneshot or --target"
        )
    project = load_project(options.config, options.taskfile, options.datasources)
    # The project (every task's spec, the DAG) lives as long as the run and holds no cycle to
    # collect: out of the cyclic GC's sight until the run ends, whose full passes over 10,000
    # tasks' worth of objects were a few per cent of a run's CPU (and so are the store's
    # modules and the runner's tables: frozen too, just before the run starts). No
    # gc.collect() first: it found nothing to free and took 45 ms at 10,000 tasks. Back in
    # sight afterwards, for a caller that goes on in the same process.
    gc.freeze()
    try:
        return _execute(project, options)
    finally:
        gc.unfreeze()


def _execute(project: Project, options: RunOptions) -> ExitCode:
    selected = select_tasks(project, options)
    if options.dry_run and not options.resume:
        from mflow.dryrun import print_plan

        print_plan(project, selected, options.concurrency)
        return ExitCode.OK
    log_dir = Path(options.log_dir or project.config.log_directory).resolve()
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _usage(f"cannot create the log directory {log_dir}: {exc.strerror}") from None

    from mflow.state import locate, open_store

    location = locate(options.state, project.config.state, project.datasources)
    store = open_store(location)
    try:
        return _run_with_store(project, options, selected, log_dir, location, store)
    finally:
        store.close()


def _run_with_store(
    project: Project,
    options: RunOptions,
    selected: tuple[str, ...],
    log_dir: Path,
    location: StoreLocation,
    store: StateStore,
) -> ExitCode:
    from mflow.console import make_console
    from mflow.logs import MasterLog
    from mflow.runner import Runner, Settings
    from mflow.state.writer import StoreWriter

    parent = _parse_parent(options.parent)
    run, plan, resumed = _take_run(store, project, options, selected, parent)
    if options.dry_run:  # --resume --dry-run: show what the resumed run would do
        from mflow.dryrun import print_plan

        store.finish_run(run.id, run.status, time.time())
        print_plan(project, plan.tasks, options.concurrency, done=plan.done)
        return ExitCode.OK
    writer = StoreWriter(store, run.id)
    listeners = Listeners([writer])
    finished = False
    try:
        listeners.add(MasterLog(log_dir))
        listeners.add(make_console(quiet=options.quiet, json_output=options.json))
        settings = Settings(
            run_id=run.id,
            log_dir=log_dir,
            concurrency=options.concurrency or project.config.max_process_concurrency,
            concurrency_fixed=options.concurrency is not None,
            fail_fast=options.fail_fast,
            state_url=location.url if location.datasource is None else None,
            state_display=location.display,
            parent_run_id=parent[0] if parent else None,
            parent_task_id=parent[1] if parent else None,
            resumed=resumed,
            resume_command=resume_command(project, options, run.id),
        )
        runner = Runner(project, plan, settings, listeners)
        gc.freeze()  # what was built since loading (see execute)
        outcome = runner.run()
        finished = True
    finally:
        if not finished:  # a crash before the run ended: do not leave it RUNNING and locked
            writer.fail_run(time.time())
        listeners.close()
    if writer.error:
        print(
            f"mflow: {writer.error} (the logs in {log_dir} have the full record)", file=sys.stderr
        )
        return ExitCode.UNAVAILABLE
    return outcome.exit_code


def _take_run(
    store: StateStore,
    project: Project,
    options: RunOptions,
    selected: tuple[str, ...],
    parent: tuple[int, str] | None,
) -> tuple[RunRecord, Plan, bool]:
    """Start a new run, or take over the one to resume; return it with its plan."""
    from mflow.runner import Plan
    from mflow.state.base import NewRun, this_host

    # A child run is part of its parent's run, which holds the DAG lock: it takes none of its
    # own, so two tasks of a parent may run the same child DAG side by side.
    lock = not options.allow_concurrent and parent is None
    previous = _run_to_resume(store, project, options, parent)
    if previous is None:
        run = store.start_run(
            NewRun(
                dag=project.dag.name,
                taskfile=str(project.dag.path),
                host=this_host(),
                pid=os.getpid(),
                started_at=time.time(),
                log_directory=str(project.config.log_directory),
                parent_run_id=parent[0] if parent else None,
                parent_task_id=parent[1] if parent else None,
            ),
            lock=lock,
        )
        store.add_tasks(run.id, selected)
        return run, Plan(selected), False
    rows = store.tasks(previous.id)
    _kill_orphans(previous.id, rows)
    run = store.resume_run(previous.id, host=this_host(), pid=os.getpid(), lock=lock)
    known = {r.task_id: r for r in rows}
    tasks = tuple(t for t in project.dag.tasks if t in known) or selected
    store.add_tasks(run.id, tasks)
    done = frozenset(t for t in tasks if t in known and known[t].state is TaskState.SUCCESS)
    attempts = {t: known[t].attempt for t in tasks if t in known}
    return run, Plan(tasks, done, attempts), True


def _run_to_resume(
    store: StateStore, project: Project, options: RunOptions, parent: tuple[int, str] | None
) -> RunRecord | None:
    if options.resume:
        if options.resume == "last":
            run = store.latest_run(project.dag.name)
            if run is None:
                raise RunNotFound(
                    f"--resume last: DAG '{project.dag.name}' has no run to resume "
                    f"in {store.display_url}"
                )
        else:
            if not options.resume.isdigit():
                raise _usage(f"--resume takes a run id or 'last', got '{options.resume}'")
            run = store.get_run(int(options.resume))
        if run.dag != project.dag.name:
            raise _usage(
                f"--resume {options.resume}: run {run.id} is of DAG '{run.dag}', "
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


def _kill_orphans(run_id: int, rows: list[TaskRecord]) -> None:
    """Task processes of a killed mflow (SIGKILL) may still run: stop them before resuming.

    Only processes on this host whose environment says they are that run's task are touched."""
    from mflow.state.base import this_host

    host = this_host()
    for row in rows:
        if row.state is not TaskState.RUNNING or row.host != host or not row.pid:
            continue
        try:
            environ = Path(f"/proc/{row.pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        mine = {f"MFLOW_RUN_ID={run_id}".encode(), f"MFLOW_TASK_ID={row.task_id}".encode()}
        if mine <= set(environ):
            try:
                os.killpg(row.pid, signal.SIGKILL)
            except OSError:
                pass
