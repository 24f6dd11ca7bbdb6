"""The ZooKeeper state store (kazoo), for sites that already run ZooKeeper for HA scheduling.

URL: `zk://host:port[,host:port]/root` (root defaults to `/mflow`). Values are UTF-8 JSON.

    <root>/meta                            {"schema_version": 1}
    <root>/runs/0000000000                 reserved: makes the first run id 1
    <root>/runs/<10-digit id>              a run: {"dag", "status", "host", "pid", ...}
    <root>/runs/<id>/tasks/<task>          a task row: {"state", "attempt", ...}
    <root>/locks/<dag>                     EPHEMERAL run lock: {"run_id", "host", "pid"}
    <root>/dags/<dag>/<id>                 index for list_runs(dag=...) and orphan checks
    <root>/children/<parent id>/<id>       index for child_runs

Run ids come from sequential znodes: a run node is created with `sequence=True` under
`runs/`, whose only children are runs, so ids increase by one from 1 (the reserved node
takes 0). DAG and task names are percent-encoded in node names.

This module is the store: runs, task rows and queries. The rest of the backend:

    znodes.py              the paths above, and each record as its node's JSON
    zookeeper_lock.py      the run lock: ephemeral, orphaned runs, stale holders, lost sessions
    zookeeper_client.py    connecting, lost connections, multi-node writes in bounded requests
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from mflow.errors import RunAlreadyActive, RunNotFound, StateStoreError
from mflow.state.base import (
    SCHEMA_VERSION,
    NewRun,
    RunRecord,
    StateStore,
    TaskRecord,
    schema_too_new,
)
from mflow.state.znodes import (
    RESERVED,
    Znodes,
    dumps,
    id_node,
    loads,
    node_name,
    parse_zk_url,
    run_from_value,
    task_from_value,
    task_value,
    zk_credentials,
)
from mflow.state.zookeeper_client import answer, commit_writes, committed, connect, zk_errors
from mflow.state.zookeeper_jobs import ZooKeeperJobs
from mflow.state.zookeeper_lock import RunLocks
from mflow.state.zookeeper_ops import ZooKeeperOperations
from mflow.state.zookeeper_partitions import Cursor, ZooKeeperPartitions
from mflow.states import RunState, TaskState

if TYPE_CHECKING:
    from kazoo.protocol.states import ZnodeStat

    from mflow.state import StoreLocation

__all__ = ["ZooKeeperStore", "parse_zk_url"]

LOCK_ATTEMPTS = 5


class ZooKeeperStore(ZooKeeperOperations, ZooKeeperPartitions, ZooKeeperJobs, StateStore):
    """Runs, task rows and run locks as znodes under one root; operations in zookeeper_ops."""

    connect_timeout = 10.0  # seconds to find a server at start (class attribute: tests shorten it)

    def __init__(self, location: StoreLocation) -> None:
        self.display_url = location.display
        self.hosts, self.root = parse_zk_url(location.url)
        self.nodes = Znodes(self.root)
        self.client = connect(
            self.hosts, self.display_url, self.connect_timeout, zk_credentials(location.url)
        )
        self._ready = False
        self._known: dict[int, set[str]] = {}  # run id -> task nodes known to exist
        self._layout_known = False  # the partitions' layout is checked (or upgraded)
        self._prepared: set[str] = set()  # datasets whose partition trees exist
        self._cursors: dict[tuple[tuple[str, ...], str], Cursor] = {}  # a claimer's candidates
        self.locks = RunLocks(self.client, self.nodes)

    # ------------------------------------------------------------------ schema

    @zk_errors
    def init(self) -> None:
        path = self.nodes.path
        self.client.ensure_path(self.root)
        txn = self.client.transaction()
        txn.create(path("meta"), dumps({"schema_version": SCHEMA_VERSION}))
        txn.create(path("runs"))
        # A sequential child is numbered from its parent's child count: the reserved node
        # makes the first run 0000000001.
        txn.create(path("runs", RESERVED), dumps({"reserved": "run ids start at 1"}))
        for name in ("locks", "dags", "children"):
            txn.create(path(name))
        results = txn.commit()
        if isinstance(results[0], NodeExistsError):  # initialised before (or just now)
            data, _ = self.client.retry(self.client.get, path("meta"))
            version = int(loads(data).get("schema_version", 0))
            if version > SCHEMA_VERSION:
                raise schema_too_new(self.display_url, version)
        elif not committed(results):
            raise StateStoreError(f"state store {self.display_url}: cannot create {results}")
        self._ready = True

    def _ensure(self) -> None:
        if not self._ready:
            if self.client.retry(self.client.exists, self.nodes.path("meta")) is None:
                self.init()
            self._ready = True

    # ------------------------------------------------------------------ runs

    @zk_errors
    def start_run(self, run: NewRun, *, lock: bool = True) -> RunRecord:
        self._ensure()
        value = {
            "dag": run.dag,
            "taskfile": run.taskfile,
            "status": RunState.RUNNING.value,
            "host": run.host,
            "pid": run.pid,
            "started_at": run.started_at,
            "ended_at": None,
            "heartbeat_at": run.started_at,
            "log_directory": run.log_directory,
            "parent_run_id": run.parent_run_id,
            "parent_task_id": run.parent_task_id,
            "locked": lock,
        }
        dag_index = self.nodes.dag_index(run.dag)
        self.client.retry(self.client.ensure_path, dag_index)
        if run.parent_run_id is not None:
            self.client.retry(self.client.ensure_path, self.nodes.children(run.parent_run_id))
        for _ in range(LOCK_ATTEMPTS):
            if lock:
                self.locks.free(run.dag)
            path = self.client.create(self.nodes.path("runs", ""), dumps(value), sequence=True)
            run_id = int(path.rsplit("/", 1)[1])
            txn = self.client.transaction()
            if lock:
                self.locks.take(txn, run.dag, run_id)
            txn.create(f"{path}/tasks")
            txn.create(f"{dag_index}/{id_node(run_id)}")
            if run.parent_run_id is not None:
                txn.create(f"{self.nodes.children(run.parent_run_id)}/{id_node(run_id)}")
            results = txn.commit()
            if committed(results):
                if lock:
                    self.locks.taken(run.dag, run_id)
                self._known[run_id] = set()
                return run_from_value(run_id, value)
            # The run never existed: another starter took the lock between our look and
            # our create. Look again (and name it, if it is alive).
            self.client.retry(self.client.delete, path)
            if not (lock and isinstance(results[0], NodeExistsError)):
                raise StateStoreError(f"state store {self.display_url}: cannot create {results}")
        raise StateStoreError(
            f"could not take the run lock of DAG '{run.dag}': too much contention"
        )

    @zk_errors
    def resume_run(self, run_id: int, *, host: str, pid: int, lock: bool = True) -> RunRecord:
        self._ensure()
        for _ in range(LOCK_ATTEMPTS):
            current, value, stat = self._read_run(run_id)
            if current.status is RunState.RUNNING and not self.locks.owner_gone(current, value):
                raise RunAlreadyActive(current.dag, run_id, current.host, current.pid)
            held = self.locks.free(current.dag, own_run_id=run_id) if lock else None
            now = time.time()
            value.update(
                status=RunState.RUNNING.value,
                host=host,
                pid=pid,
                ended_at=None,
                heartbeat_at=now,
                locked=lock,
                note=None,
            )
            txn = self.client.transaction()
            txn.set_data(self.nodes.run(run_id), dumps(value), stat.version)
            if held is not None:  # its own lock, left by its dead owner's session: take it over
                txn.delete(self.nodes.lock(current.dag), version=held.version)
            if lock:
                self.locks.take(txn, current.dag, run_id)
            results = txn.commit()
            if committed(results):
                if lock:
                    self.locks.taken(current.dag, run_id)
                return run_from_value(run_id, value)
        raise StateStoreError(f"could not resume run {run_id}: too much contention")

    @zk_errors
    def heartbeat(self, run_id: int, at: float) -> None:
        self._update_run(run_id, heartbeat_at=at)

    @zk_errors
    def finish_run(self, run_id: int, status: RunState, at: float) -> None:
        for _ in range(LOCK_ATTEMPTS):
            try:
                data, stat = self.client.retry(self.client.get, self.nodes.run(run_id))
            except NoNodeError:
                raise self._not_found(run_id) from None
            value = loads(data)
            value.update(status=RunState(status).value, ended_at=at)
            txn = self.client.transaction()
            txn.set_data(self.nodes.run(run_id), dumps(value), stat.version)
            self.locks.release(txn, value["dag"], run_id)
            results = txn.commit()
            if committed(results):
                self.locks.released(value["dag"], run_id)
                self._known.pop(run_id, None)
                return
        raise StateStoreError(f"could not finish run {run_id}: too much contention")

    def _update_run(self, run_id: int, **changes: Any) -> None:
        while True:
            try:
                data, stat = self.client.retry(self.client.get, self.nodes.run(run_id))
            except NoNodeError:
                raise self._not_found(run_id) from None
            value = {**loads(data), **changes}
            try:
                self.client.retry(
                    self.client.set, self.nodes.run(run_id), dumps(value), stat.version
                )
                return
            except BadVersionError:
                continue  # changed under us (marked FAILED...): apply ours to the new value

    # ------------------------------------------------------------------ task rows

    @zk_errors
    def add_tasks(self, run_id: int, task_ids: Iterable[str]) -> None:
        self._ensure()
        names = list(dict.fromkeys(node_name(t) for t in task_ids))
        data = dumps({"state": TaskState.NONE.value, "attempt": 0})
        tasks = self.nodes.tasks(run_id)
        for attempt in range(2):
            present = self._task_nodes(run_id)
            new = [name for name in names if name not in present]
            try:
                commit_writes(self.client, [(f"{tasks}/{name}", data, False) for name in new])
                break
            except NodeExistsError:
                if attempt:
                    raise
                self._known.pop(run_id, None)  # another process added some: re-read
        present.update(new)

    def _task_nodes(self, run_id: int) -> set[str]:
        """The task nodes of a run, cached: record() needs to know create from set."""
        if run_id not in self._known:
            try:
                self._known[run_id] = set(
                    self.client.retry(self.client.get_children, self.nodes.tasks(run_id))
                )
            except NoNodeError:
                raise self._not_found(run_id) from None
        return self._known[run_id]

    @zk_errors
    def record(self, changes: Sequence[TaskRecord]) -> None:
        if not changes:
            return
        self._ensure()
        # Each change carries every field: writing the last one per task is applying them all.
        last = {(c.run_id, c.task_id): c for c in changes}
        latest = {(r, node_name(t)): task_value(c) for (r, t), c in last.items()}
        for attempt in range(2):
            ops = []
            for (run_id, name), data in latest.items():
                path = f"{self.nodes.tasks(run_id)}/{name}"
                ops.append((path, data, name in self._task_nodes(run_id)))
            try:
                commit_writes(self.client, ops)
                break
            except (NodeExistsError, NoNodeError):
                if attempt:
                    raise
                for run_id, _ in latest:  # our cache was wrong (another process): re-read
                    self._known.pop(run_id, None)
        for run_id, name in latest:
            self._task_nodes(run_id).add(name)

    # ------------------------------------------------------------------ queries

    @zk_errors
    def get_run(self, run_id: int) -> RunRecord:
        self._ensure()
        return self._read_run(run_id)[0]

    def _read_run(self, run_id: int) -> tuple[RunRecord, dict[str, Any], ZnodeStat]:
        try:
            data, stat = self.client.retry(self.client.get, self.nodes.run(run_id))
        except NoNodeError:
            raise self._not_found(run_id) from None
        value = loads(data)
        return run_from_value(run_id, value), value, stat

    def _read_runs(self, ids: Sequence[int]) -> list[RunRecord]:
        """Runs by id, fetched in one pipelined round of requests; missing ones skipped."""
        pending = [(run_id, self.client.get_async(self.nodes.run(run_id))) for run_id in ids]
        found = []
        for run_id, result in pending:
            try:
                data, _ = answer(result)
            except NoNodeError:
                continue
            found.append(run_from_value(run_id, loads(data)))
        return found

    @zk_errors
    def list_runs(
        self,
        *,
        dag: str | None = None,
        status: RunState | None = None,
        limit: int = 20,
        top_level: bool = False,
        before: int | None = None,
    ) -> list[RunRecord]:
        self._ensure()
        parent = self.nodes.dag_index(dag) if dag is not None else self.nodes.path("runs")
        try:
            names = self.client.retry(self.client.get_children, parent)
        except NoNodeError:
            return []
        ids = sorted((int(n) for n in names if n.isdigit() and n != RESERVED), reverse=True)
        if before is not None:
            ids = [i for i in ids if i < before]
        wanted = None if status is None else RunState(status)
        found: list[RunRecord] = []
        batch = max(limit, 1) * (1 if wanted is None and not top_level else 4)
        for start in range(0, len(ids), batch):
            for run in self._read_runs(ids[start : start + batch]):
                if top_level and run.parent_run_id is not None:
                    continue
                if wanted is None or run.status is wanted:
                    found.append(run)
                    if len(found) == limit:
                        return found
        return found

    @zk_errors
    def tasks(self, run_id: int) -> list[TaskRecord]:
        self._ensure()
        tasks = self.nodes.tasks(run_id)
        try:
            names = sorted(self.client.retry(self.client.get_children, tasks))
        except NoNodeError:
            return []
        pending = [(name, self.client.get_async(f"{tasks}/{name}")) for name in names]
        records = []
        for name, result in pending:
            try:
                data, _ = answer(result)
            except NoNodeError:
                continue
            records.append(task_from_value(run_id, unquote(name), loads(data)))
        return records

    @zk_errors
    def child_runs(self, run_id: int) -> list[RunRecord]:
        self._ensure()
        try:
            names = self.client.retry(self.client.get_children, self.nodes.children(run_id))
        except NoNodeError:
            return []
        return self._read_runs(sorted(int(name) for name in names))

    def close(self) -> None:
        self.locks.close()
        self.client.stop()
        self.client.close()

    def _not_found(self, run_id: int) -> RunNotFound:
        return RunNotFound(f"run {run_id} not found in state store {self.display_url}")
