"""Starting a run: take it in the store, run it with its listeners, return what happened.

`execute(request, view)` is how every face runs a DAG in this process (the CLI, and the
scheduler's and the API's run processes, which are the CLI): it loads the files and plans the
run (`mflow.plan`, read-only), takes the run in the store (`take_run`: the lock and the rows),
runs it with the store writer and the master log as listeners besides the face's own `view`,
and returns a `RunResult`. It never prints and never exits.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mflow.errors import ConfigError, ExitCode
from mflow.events import Event, Listener, Listeners, OwnerGone, RunNotice
from mflow.states import RunState, TaskState

if TYPE_CHECKING:
    from collections.abc import Callable

    from mflow.plan import RunPlan, RunRequest
    from mflow.runner import Plan
    from mflow.state.base import RunRecord, StateStore, TaskRecord


@dataclass(frozen=True)
class RunResult:
    run_id: int
    state: RunState
    exit_code: ExitCode
    counts: dict[str, int] = field(default_factory=dict)
    log_dir: Path | None = None
    store_error: str | None = None  # a transition could not be recorded (the logs have it)
    nothing_left: bool = False  # a resume of a run with every task done: nothing was run


def execute(
    request: RunRequest,
    view: Listener | None = None,
    on_taken: Callable[[RunRecord], None] | None = None,
) -> RunResult:
    """Run the request's DAG; raises MflowError for bad input or an unreachable store.
    `on_taken` is called with the run once it is taken in the store (`mflow.launch`)."""
    from mflow.memory import long_lived
    from mflow.plan import load, locate_store, plan_run
    from mflow.state import open_store

    project = load(request)
    # The project lives as long as the run and holds no cycle to collect (mflow.memory).
    with long_lived() as more:
        store = open_store(locate_store(project, request))
        try:
            plan = plan_run(project, request, store)
            if plan.nothing_left:  # changes nothing: not its owner, its times, its state
                previous = plan.previous
                assert previous is not None
                code = ExitCode.OK if previous.status is RunState.SUCCESS else ExitCode.TASK_FAILED
                return RunResult(
                    previous.id,
                    previous.status,
                    code,
                    {TaskState.SUCCESS.value: len(plan.tasks)},
                    nothing_left=True,
                )
            prepare_log_dir(plan.log_dir)
            return run_plan(plan, store, view, more, on_taken)
        finally:
            store.close()


def prepare_log_dir(log_dir: Path) -> None:
    """The log directory exists (created 0700 when mflow makes it) and takes files."""
    from mflow.files import make_private_dir

    try:
        make_private_dir(log_dir)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the log directory {log_dir}: {exc.strerror}", json_path=""
        ) from None
    if not log_dir.is_dir():
        raise ConfigError(f"the log directory {log_dir} is not a directory", json_path="")


def _log_error(log_dir: Path, exc: OSError) -> ConfigError:
    where = exc.filename or log_dir
    return ConfigError(
        f"cannot write in the log directory {log_dir}: {where}: {exc.strerror}",
        json_path="",
        hint="choose another with --log-dir or log_directory in config.json",
    )


def run_plan(
    plan: RunPlan,
    store: StateStore,
    view: Listener | None = None,
    more: object = None,
    on_taken: Callable[[RunRecord], None] | None = None,
) -> RunResult:
    """Take the planned run in the store and run it to its end."""
    from mflow.logs import MasterLog, store_tag
    from mflow.runner import Runner, Settings
    from mflow.state.writer import StoreWriter

    try:  # the logs can be written, before anything is recorded
        tag = store_tag(plan.log_dir, store.store_id())
        master = MasterLog(plan.log_dir, tag)
    except OSError as exc:
        raise _log_error(plan.log_dir, exc) from None
    try:
        run, runner_plan, taken = take_run(plan, store)
    except BaseException:
        master.close()
        raise
    if on_taken is not None:
        on_taken(run)
    writer = StoreWriter(store, run.id)
    listeners = Listeners([writer])
    finished = False
    try:
        listeners.add(master)
        if view is not None:
            listeners.add(view)
        for event in taken:  # what taking the run found, before the run's own events
            listeners.handle(event)
        location = plan.location
        settings = Settings(
            run_id=run.id,
            log_dir=plan.log_dir,
            concurrency=plan.concurrency,
            concurrency_fixed=plan.request.concurrency is not None,
            fail_fast=plan.request.fail_fast,
            state_url=location.url if location.datasource is None else None,
            state_display=location.display,
            parent_run_id=plan.parent[0] if plan.parent else None,
            parent_task_id=plan.parent[1] if plan.parent else None,
            resumed=plan.resumes,
            log_tag=tag,
        )
        runner = Runner(plan.project, runner_plan, settings, listeners)
        writer.on_stop = runner.request_stop
        if callable(more):
            more()  # what was built since loading lives as long as the run (mflow.memory)
        outcome = runner.run()
        finished = True
    finally:
        if not finished:  # a crash before the run ended: do not leave it RUNNING and locked
            writer.fail_run(time.time())
        listeners.close()
    return RunResult(
        run_id=run.id,
        state=outcome.state,
        exit_code=ExitCode.UNAVAILABLE if writer.error else outcome.exit_code,
        counts=outcome.counts,
        log_dir=plan.log_dir,
        store_error=writer.error,
    )


def take_run(plan: RunPlan, store: StateStore) -> tuple[RunRecord, Plan, list[Event]]:
    """Start a new run, or take over the one the plan continues: the lock and the rows.
    Returns the run, the runner's plan, and the events of taking it (an owner found gone)."""
    from mflow.logs import count
    from mflow.plan import snapshot
    from mflow.runner import Plan
    from mflow.state.base import NewRun, TaskRecord, this_host

    # A child run is part of its parent's run, which holds the DAG lock: it takes none of its
    # own, so two tasks of a parent may run the same child DAG side by side.
    lock = not plan.request.allow_concurrent and plan.parent is None
    project = plan.project
    if plan.previous is None:
        run = store.start_run(
            NewRun(
                dag=project.dag.name,
                taskfile=str(project.dag.path),
                host=this_host(),
                pid=os.getpid(),
                started_at=time.time(),
                log_directory=str(plan.log_dir),
                parent_run_id=plan.parent[0] if plan.parent else None,
                parent_task_id=plan.parent[1] if plan.parent else None,
            ),
            lock=lock,
        )
        store.add_tasks(run.id, plan.tasks)
        store.set_definitions(run.id, snapshot(project))
        return run, Plan(plan.tasks), []
    previous = plan.previous
    _kill_orphans(previous.id, plan.previous_tasks)
    run = store.resume_run(previous.id, host=this_host(), pid=os.getpid(), lock=lock)
    # The run's record follows the DAG as it is now: removed tasks leave it, added ones join
    # it, and what runs again is not SUCCESS any more (should this run be stopped too).
    store.remove_tasks(run.id, plan.changes.removed)
    store.add_tasks(run.id, plan.tasks)
    attempts = {r.task_id: r.attempt for r in plan.previous_tasks}
    store.record([TaskRecord(run.id, t, TaskState.NONE, attempts[t]) for t in sorted(plan.rerun)])
    store.set_definitions(run.id, snapshot(project))
    taken: list[Event] = []
    if previous.status is RunState.RUNNING:  # resume_run refuses a live owner: this one is gone
        taken.append(
            OwnerGone(
                previous.id,
                previous.host,
                previous.pid,
                previous.heartbeat_at,
                time.time(),
                resumed_by=os.getpid(),
            )
        )
    now = time.time()
    if plan.changes or not plan.changes.recorded:
        taken.append(RunNotice(run.id, "WARNING", plan.changes.describe(run.id), now))
    if plan.request.rerun_from:
        again = count(len(plan.rerun), "task")
        taken.append(
            RunNotice(run.id, "INFO", f"--from {plan.request.rerun_from}: {again} again", now)
        )
    return run, Plan(plan.tasks, plan.done, plan.attempts), taken


def _kill_orphans(run_id: int, rows: tuple[TaskRecord, ...]) -> None:
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


def dry_run(request: RunRequest) -> RunPlan:
    """The plan of the request, for `--dry-run`: read-only (the store is read for a resume)."""
    from mflow.plan import load, locate_store, plan_run, reads_store

    project = load(request)
    if not reads_store(request):
        return plan_run(project, request, None)
    from mflow.state import open_store

    store = open_store(locate_store(project, request))
    try:
        return plan_run(project, request, store)
    finally:
        store.close()
