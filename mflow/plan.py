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
from mflow.files import resolved
from mflow.states import RunState, TaskState, is_run_id

if TYPE_CHECKING:
    from mflow.config import Project, TaskSpec
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
    rerun_from: str | None = None  # --from TASK: with --resume, TASK and its downstream again
    oneshot: str | None = None
    target: str | None = None
    fail_fast: bool = False
    allow_concurrent: bool = False
    state: str | None = None
    log_dir: Path | None = None
    parent: str | None = None  # "RUN_ID:TASK_ID" for child runs
    job: str | None = None  # a stored job's name: its task is the DAG (mflow.jobs)
    env: tuple[tuple[str, str], ...] = ()  # for every task, after config.json's (a partition)


@dataclass(frozen=True)
class DagChanges:
    """How the DAG differs from the run being resumed."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()  # the definition differs (command, fields, retries...)
    recorded: bool = True  # False: the run predates recorded definitions (no `changed`)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self, run_id: int) -> str:
        parts = [
            f"{what} {', '.join(names)}"
            for what, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("changed", self.changed),
            )
            if names
        ]
        text = f"the DAG changed since run {run_id}: " + "; ".join(parts) if parts else ""
        if not self.recorded:
            unknown = f"run {run_id} has no recorded task definitions: changed tasks cannot be told"
            text = f"{text} ({unknown})" if text else unknown
        return text


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
    changes: DagChanges = DagChanges()
    rerun: frozenset[str] = frozenset()  # SUCCESS tasks that run again (--from, changed)

    @property
    def resumes(self) -> bool:
        return self.previous is not None

    @property
    def nothing_left(self) -> bool:
        """A resume with every task already done and nothing removed: it changes nothing."""
        previous = self.previous
        return (
            previous is not None
            and previous.status is not RunState.RUNNING  # (its owner died: take it and end it)
            and not self.changes.removed
            and len(self.done) == len(self.tasks)
        )


def usage(message: str, hint: str | None = None) -> ConfigError:
    """A wrong option or combination of options (exit 2)."""
    return ConfigError(message, json_path="", hint=hint)


def load(request: RunRequest) -> Project:
    """The request's files (or its job), loaded and checked (raises InvalidInput)."""
    from mflow.project import load_project

    if request.job is not None:
        return _with_env(_load_job(request), request.env)

    if request.resume and (request.oneshot or request.target):
        raise usage(
            "--resume continues a run as it was; it cannot be combined with --oneshot or --target"
        )
    if request.oneshot and request.target:
        raise usage("--oneshot and --target choose the tasks in different ways: give one")
    if request.rerun_from and not request.resume:
        raise usage(
            "--from TASK reruns part of an earlier run: give the run with --resume RUN_ID|last"
        )
    return _with_env(
        load_project(request.config, request.taskfile, request.datasources), request.env
    )


def _with_env(project: Project, env: tuple[tuple[str, str], ...]) -> Project:
    if not env:
        return project
    from dataclasses import replace

    return replace(project, config=replace(project.config, env=project.config.env + env))


def _load_job(request: RunRequest) -> Project:
    """A run of a stored job (`mflow run --job NAME`: what the scheduler starts)."""
    from mflow.jobs import job_project, known_job
    from mflow.project import load_config, load_datasources
    from mflow.state import locate, open_store

    if request.taskfile is not None or request.resume or request.oneshot or request.target:
        raise usage("--job runs a stored job: no --taskfile, --resume, --oneshot or --target")
    config = load_config(request.config)
    datasources = load_datasources(request.datasources)
    store = open_store(locate(request.state, config.state, datasources))
    try:
        record = known_job(store, request.job or "")
    finally:
        store.close()
    return job_project(record, config, datasources)


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
    if not is_run_id(run) or not task:
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
        log_dir=resolved(Path(request.log_dir or project.config.log_directory)),
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
    dag_tasks = project.dag.tasks
    current = definitions(project) or {}
    blob = store.definitions(previous.id)
    old = definitions(project, blob) if blob is not None else None
    if old is None:  # recorded before mflow kept definitions: what it had is what it was
        added = tuple(t for t in dag_tasks if t not in known)
        changed: tuple[str, ...] = ()
    else:
        added = tuple(t for t in dag_tasks if t not in old and t not in known)
        changed = tuple(t for t in dag_tasks if t in known and t in old and old[t] != current[t])
    changes = DagChanges(
        added=added,
        removed=tuple(r.task_id for r in rows if r.task_id not in dag_tasks),
        changed=changed,
        recorded=old is not None,
    )
    tasks = tuple(t for t in dag_tasks if t in known or t in added)
    succeeded = {t for t in tasks if t in known and known[t].state is TaskState.SUCCESS}
    rerun = succeeded & (set(changed) | _from(request, project, tasks))
    return RunPlan(
        project=project,
        request=request,
        tasks=tasks,
        log_dir=plan.log_dir,
        location=plan.location,
        concurrency=plan.concurrency,
        done=frozenset(succeeded - rerun),
        attempts={t: known[t].attempt for t in tasks if t in known},
        previous=previous,
        previous_tasks=tuple(rows),
        parent=parent,
        changes=changes,
        rerun=frozenset(rerun),
    )


def _from(request: RunRequest, project: Project, tasks: tuple[str, ...]) -> set[str]:
    """`--from TASK`: TASK and everything downstream of it in the resumed run."""
    name = request.rerun_from
    if name is None:
        return set()
    if name not in tasks:
        known = ", ".join(tasks[:10]) + (", …" if len(tasks) > 10 else "")
        raise usage(f"--from: task '{name}' is not in the run being resumed", f"known: {known}")
    from mflow import graph

    in_run = {t: project.dag.tasks[t] for t in tasks}
    return graph.downstream(in_run, [name])


def snapshot(project: Project) -> bytes:
    """What a run's DAG was, kept with the run (`StateStore.set_definitions`): the tasks file
    and config.json as read, compressed. Cheap at every start (a few ms for 10,000 tasks);
    only a resume works out the tasks' definitions from it (`definitions`)."""
    import json
    import zlib

    config = project.config
    document = {
        "v": 1,
        "taskfile": project.dag.text,
        "taskfile_name": project.dag.path.name,
        "config": config.text,
        "config_name": config.path.name if config.path else None,
    }
    return zlib.compress(json.dumps(document).encode("utf-8"), 1)


def definitions(project: Project, blob: bytes | None = None) -> dict[str, str] | None:
    """A digest of each task's definition: what it runs and how (its fields, and the retries,
    timeout, environment and directory it gets from the defaults), not its description. Of
    the project as it is, or (`blob`) as a run kept it; None when the blob cannot be read."""
    if blob is not None:
        specs = _specs_of_snapshot(project, blob)
        if specs is None:
            return None
    else:
        specs = project.dag.tasks
    return {task_id: _digest(spec) for task_id, spec in specs.items()}


def _digest(spec: TaskSpec) -> str:
    import hashlib
    import json

    fields = {k: v for k, v in spec.fields.items() if k != "description"}
    what = [fields, spec.retries, spec.retry_delay, spec.timeout, spec.env, str(spec.cwd)]
    text = json.dumps(what, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _specs_of_snapshot(project: Project, blob: bytes) -> Mapping[str, TaskSpec] | None:
    """The tasks of a kept snapshot, built as they were (with the config of then)."""
    import json
    import zlib

    from mflow import config as cfg
    from mflow.errors import MflowError

    try:
        document = json.loads(zlib.decompress(blob))
        path = project.dag.path.with_name(document["taskfile_name"])
        conf = cfg.default_config()
        if document.get("config"):
            config_path = Path(document.get("config_name") or "config.json")
            doc = cfg.parse_document(document["config"], config_path)
            conf = cfg.build_config(doc, project.config.path, project.dag.path.parent)
        tasks_doc = cfg.parse_document(document["taskfile"], path)
        _, specs = cfg.build_tasks(tasks_doc, project.dag.path, project.taskfile_display, conf)
    except (MflowError, ValueError, KeyError, TypeError, zlib.error):
        return None
    return {spec.id: spec for spec in specs}


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
            if not is_run_id(request.resume):
                raise usage(f"--resume takes a run id or 'last', got '{request.resume}'")
            run = store.get_run(int(request.resume))
        if run.dag != project.dag.name:
            raise usage(
                f"--resume {request.resume}: run {run.id} is of DAG '{run.dag}', "
                f"not '{project.dag.name}' ({project.taskfile_display})"
            )
        return run
    if parent is not None and request.job is None:
        # A child run started again by its parent (a retry, a resumed parent) continues the
        # child run it started before, so nothing that succeeded runs twice.
        mine = [r for r in store.child_runs(parent[0]) if r.parent_task_id == parent[1]]
        if mine:
            return mine[-1]
    return None
