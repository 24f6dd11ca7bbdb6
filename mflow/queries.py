"""What operators ask the store: recent runs, a run's tasks (child runs nested), a task's log.

Every query takes a store and plain arguments and returns data (records, `RunTree`,
`TaskLog`); the CLI prints it (`mflow.render`), the HTTP API serialises it (`tree_dict`,
`record_dict`). None of them prints.
"""

from __future__ import annotations

import codecs
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mflow.errors import ConfigError, RunNotFound
from mflow.files import open_log_for_reading
from mflow.state.base import DagSummary, RunRecord, StateStore, TaskRecord, is_stale
from mflow.states import TERMINAL, RunState, TaskState, is_run_id

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


def settle_gone(store: StateStore, runs: list[RunRecord]) -> list[RunRecord]:
    """The runs as they are: one recorded as RUNNING whose mflow is gone (same host and its
    pid dead, or no heartbeat for STALE_AFTER seconds) is marked FAILED ("owner gone") in the
    store now, not when the next run of its DAG starts."""
    if not any(r.status is RunState.RUNNING for r in runs):
        return runs
    now = time.time()
    settled = []
    for run in runs:
        if run.status is RunState.RUNNING and is_stale(run, now):
            store.mark_gone(run, now)
            run = store.get_run(run.id)  # as marked (or as another process left it)
        settled.append(run)
    return settled


def run_tree(store: StateStore, run: RunRecord, depth: int = 0) -> RunTree:
    """The run, its tasks in the order they ran, each with the child runs it started."""
    rows = sorted(
        store.tasks(run.id),
        key=lambda r: (_TASK_ORDER[r.state], r.started_at or 0.0, r.task_id),
    )
    by_task: dict[str, list[RunRecord]] = {}
    if depth < 20:  # a guard against a corrupt store pointing in circles
        for child in settle_gone(store, store.child_runs(run.id)):
            by_task.setdefault(child.parent_task_id or "", []).append(child)
    nodes = [
        TaskNode(row, [run_tree(store, c, depth + 1) for c in by_task.get(row.task_id, [])])
        for row in rows
    ]
    return RunTree(run, nodes)


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


def follow_log(
    store: StateStore, run_id: int, task: TaskRecord, poll: float = 0.5, offset: int = 0
) -> Iterator[str]:
    """The task log as it grows, chunk by chunk, until the task has ended and the file stops
    growing; the generator's return value (StopIteration.value) is the run as last seen.

    A task has ended when its row is in a final state with no retry to come, or when its run
    has ended or been abandoned (its mflow killed: the store still says RUNNING, but
    `is_stale`). The file is read once more after that is seen: the task may have written its
    last lines between the previous read and the look at the store. The run returned lets the
    caller tell an abandoned run from an ended task. `offset`: the bytes already shown.
    """
    path = Path(task.log_path) if task.log_path else None
    position = offset
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    run: RunRecord | None = None
    while True:
        if path is not None and path.exists():
            try:
                with open_log_for_reading(path) as f:
                    f.seek(position)
                    data = f.read()
                    position = f.tell()
            except OSError:  # a symlink in its place: nothing of another file is shown
                data = b""
            chunk = decoder.decode(data)
            if chunk:
                yield chunk
                continue
        if run is not None:
            return run
        row = next((r for r in store.tasks(run_id) if r.task_id == task.task_id), task)
        if path is None and row.log_path:
            path = Path(row.log_path)
            continue
        (current,) = settle_gone(store, [store.get_run(run_id)])
        if is_stale(current) or (row.state in TERMINAL and not _retrying(row)):
            run = current
        else:
            time.sleep(poll)


def _retrying(row: TaskRecord) -> bool:
    """A failed attempt with another to come: the store keeps it as FAILED with the reason
    "...; retrying" (mflow.state.writer.StoreWriter) until the next attempt starts."""
    return row.state is TaskState.FAILED and (row.reason or "").endswith("retrying")


def parse_run_state(value: str | None) -> RunState | None:
    """`--status running` and the like; None for no filter."""
    if value is None:
        return None
    try:
        return RunState(value.upper())
    except ValueError:
        raise ConfigError(
            f"--status: unknown run status '{value}'",
            json_path="",
            hint="one of: " + ", ".join(s.value for s in RunState),
        ) from None


def list_runs(
    store: StateStore,
    *,
    dag: str | None = None,
    status: RunState | None = None,
    limit: int = 20,
    before: int | None = None,
) -> list[RunRecord]:
    """Recent runs, most recent first (a run whose owner is gone as FAILED); `before`: runs
    with a smaller id only (the next page)."""
    found = settle_gone(store, store.list_runs(dag=dag, status=status, limit=limit, before=before))
    if status is RunState.RUNNING:  # some were not running after all
        found = [r for r in found if r.status is RunState.RUNNING]
    return found


def parse_run_id(value: str | None, what: str = "RUN_ID") -> int | None:
    """A run id as typed: digits, or "last" (and nothing) for the latest run."""
    if value is None or value == "last":
        return None
    if not is_run_id(value):
        raise ConfigError(f"{what}: expected a run id or 'last', got '{value}'", json_path="")
    return int(value)


def find_run(store: StateStore, run_id: int | None = None, dag: str | None = None) -> RunRecord:
    """Run `run_id` (which must be of `dag` when it is given), or the latest run that is not
    a child run (of `dag`). Raises RunNotFound, or ConfigError for a run of another DAG."""
    if run_id is not None:
        (run,) = settle_gone(store, [store.get_run(run_id)])
        if dag is not None and run.dag != dag:
            raise ConfigError(
                f"run {run_id} is a run of DAG '{run.dag}', not '{dag}'",
                json_path="",
                hint="leave out --dag, or leave out the run id for the latest run of the DAG",
            )
        return run
    run = store.latest_run(dag, top_level=True)
    if run is None:
        raise RunNotFound(f"no runs{f' of DAG {dag}' if dag else ''} in {store.display_url}")
    return settle_gone(store, [run])[0]


def dags(store: StateStore) -> list[DagSummary]:
    """Every DAG the store knows, with its number of runs and its latest run."""
    found = store.dags()
    latest = settle_gone(store, [d.last_run for d in found])
    return [replace(d, last_run=run) for d, run in zip(found, latest, strict=True)]


def status(store: StateStore, run_id: int | None = None, dag: str | None = None) -> RunTree:
    """A run (the latest top-level one by default) with its tasks and their child runs."""
    return run_tree(store, find_run(store, run_id, dag))


@dataclass(frozen=True)
class TaskLog:
    task: TaskRecord
    text: str | None  # None: the task has not started, or its log is gone
    size: int = 0  # bytes read: where a follow of the log goes on from


def find_task(store: StateStore, run_id: int, task_id: str) -> TaskRecord:
    """The task row of a run. Raises RunNotFound for an unknown run or task."""
    store.get_run(run_id)
    row = next((r for r in store.tasks(run_id) if r.task_id == task_id), None)
    if row is None:
        raise RunNotFound(f"run {run_id} has no task '{task_id}'")
    return row


def task_log(store: StateStore, run_id: int, task_id: str) -> TaskLog:
    """A task's log so far (every attempt)."""
    row = find_task(store, run_id, task_id)
    if row.log_path is None:
        return TaskLog(row, None)
    try:
        with open_log_for_reading(row.log_path) as f:
            data = f.read()
        return TaskLog(row, data.decode("utf-8", errors="replace"), len(data))
    except OSError:  # gone, or a symlink in its place
        return TaskLog(row, None)


def run_graph(store: StateStore, run: RunRecord) -> dict[str, list[str]]:
    """Each task of the run with the tasks it waits for, as the DAG was when the run started
    (the snapshot the run keeps, SPEC §11); tasks the snapshot does not name have none."""
    import json
    import zlib

    from mflow.config import parse_document
    from mflow.errors import MflowError

    task_ids = [r.task_id for r in store.tasks(run.id)]
    edges: dict[str, list[str]] = {task_id: [] for task_id in task_ids}
    blob = store.definitions(run.id)
    if blob is None:
        return edges
    try:
        kept = json.loads(zlib.decompress(blob))
        doc = parse_document(kept["taskfile"], Path(kept.get("taskfile_name") or "tasks.json"))
        tasks = doc.get("tasks", []) if isinstance(doc, dict) else []
    except (MflowError, ValueError, KeyError, TypeError, AttributeError, zlib.error):
        return edges
    for task in tasks:
        if isinstance(task, dict) and task.get("id") in edges:
            depends = task.get("depends") or []
            edges[task["id"]] = [d for d in dict.fromkeys(depends) if d in edges]
    return edges
