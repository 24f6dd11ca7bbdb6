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

The run lock is ephemeral: when its owner's session ends (the process died) it vanishes by
itself. The run it named is then still RUNNING in `runs/`; the next run to take the lock
marks such orphans FAILED (it walks the DAG index newest first and stops at the first run
that is not RUNNING). A holder whose session is still alive but whose owner is gone (same
host and pid dead, or no heartbeat for STALE_AFTER) is released as in the SQL store, by
compare-and-set on the znode versions read.

Session loss: kazoo reconnects by itself. If the session was LOST its ephemeral locks are
gone; on reconnection this store re-creates the lock of each run it holds, best effort (if
another run took the lock meanwhile, a warning is logged and that run keeps it).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, unquote

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    SessionExpiredError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import ZnodeStat
from kazoo.retry import RetryFailedError

from mflow.errors import (
    BackendUnavailable,
    ConfigError,
    RunAlreadyActive,
    RunNotFound,
    StateStoreError,
)
from mflow.events import RunState, TaskState
from mflow.state.base import (
    SCHEMA_VERSION,
    NewRun,
    RunRecord,
    StateStore,
    TaskRecord,
    is_stale,
    this_host,
)

if TYPE_CHECKING:
    from mflow.state import StoreLocation

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/mflow"
SESSION_TIMEOUT = 10.0  # seconds; also how long a killed owner's lock outlives it at most
LOCK_ATTEMPTS = 5
MAX_TRANSACTION_BYTES = 512 * 1024  # a multi() request must stay under jute.maxbuffer (1 MB)
REASON_LENGTH = 1000  # as in the SQL store
_RESERVED = "0000000000"

T = TypeVar("T")


def parse_zk_url(url: str) -> tuple[str, str]:
    """`zk://h1:2181,h2:2181/root` -> ("h1:2181,h2:2181", "/root")."""
    scheme, sep, rest = url.partition("://")
    hosts, _, root = rest.partition("/")
    root = root.split("?", 1)[0].strip("/")
    if scheme.lower() != "zk" or not sep or not hosts:
        raise ConfigError(
            f"invalid ZooKeeper store URL '{url}'", json_path="", hint="zk://host:port[,...]/root"
        )
    return hosts, f"/{root}" if root else DEFAULT_ROOT


def _node(name: str) -> str:
    """A DAG or task name as one znode name (no '/', never '.' or '..')."""
    encoded = quote(name, safe="")
    return encoded.replace(".", "%2E") if encoded in {".", ".."} else encoded


def _id_node(run_id: int) -> str:
    return f"{run_id:010d}"


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _loads(data: bytes) -> dict[str, Any]:
    return json.loads(data.decode("utf-8")) if data else {}


def _zk_errors(method: Callable[..., T]) -> Callable[..., T]:
    """Lost connections become BackendUnavailable, like an unreachable database."""

    @functools.wraps(method)
    def wrapper(self: ZooKeeperStore, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except (
            ConnectionLoss,
            SessionExpiredError,
            ConnectionClosedError,
            RetryFailedError,
        ) as exc:
            raise BackendUnavailable(
                f"state store {self.display_url} cannot be reached: lost the ZooKeeper "
                f"session with {self.hosts} ({type(exc).__name__})"
            ) from None

    return wrapper


class ZooKeeperStore(StateStore):
    """Runs, task rows and run locks as znodes under one root."""

    connect_timeout = 10.0  # seconds to find a server at start (class attribute: tests shorten it)

    def __init__(self, location: StoreLocation) -> None:
        self.display_url = location.display
        self.hosts, self.root = parse_zk_url(location.url)
        retry = {"max_tries": 5, "delay": 0.2, "backoff": 2, "max_delay": 5, "deadline": 30}
        self.client = KazooClient(hosts=self.hosts, timeout=SESSION_TIMEOUT, command_retry=retry)
        try:
            self.client.start(timeout=self.connect_timeout)
        except KazooTimeoutError:
            raise BackendUnavailable(
                f"state store {self.display_url} cannot be reached: no ZooKeeper server "
                f"answered at {self.hosts} within {self.connect_timeout:g} s"
            ) from None
        self._ready = False
        self._held: dict[str, int] = {}  # dag -> id of the run whose lock this store holds
        self._known: dict[int, set[str]] = {}  # run id -> task nodes known to exist
        self._session_lost = False
        self.client.add_listener(self._on_state)

    def _path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def _run_path(self, run_id: int) -> str:
        return self._path("runs", _id_node(run_id))

    # ------------------------------------------------------------------ session

    def _on_state(self, state: str) -> None:
        # Runs on kazoo's event thread, which must not block: hand the work to a new one.
        if state == KazooState.LOST:
            self._session_lost = True
        elif state == KazooState.CONNECTED and self._session_lost:
            self._session_lost = False  # a new session: its ephemeral nodes are gone
            if self._held:
                self.client.handler.spawn(self._relock)

    def _relock(self) -> None:
        for dag, run_id in list(self._held.items()):
            data = _dumps(self._lock_value(run_id))
            try:
                self.client.create(self._lock_path(dag), data, ephemeral=True)
                log.warning("ZooKeeper session was lost; re-took the lock of run %s", run_id)
            except NodeExistsError:
                holder = _loads(self.client.get(self._lock_path(dag))[0]).get("run_id")
                if holder == run_id:
                    continue
                log.warning(
                    "ZooKeeper session was lost and another run took the lock of DAG '%s' "
                    "while run %s was disconnected",
                    dag, run_id,
                )  # fmt: skip
            except Exception:  # best effort: the run goes on without its lock
                log.exception("could not re-take the lock of run %s", run_id)

    def _lock_value(self, run_id: int) -> dict[str, Any]:
        return {"run_id": run_id, "host": this_host(), "pid": os.getpid()}

    # ------------------------------------------------------------------ schema

    @_zk_errors
    def init(self) -> None:
        self.client.ensure_path(self.root)
        txn = self.client.transaction()
        txn.create(self._path("meta"), _dumps({"schema_version": SCHEMA_VERSION}))
        txn.create(self._path("runs"))
        # A sequential child is numbered from its parent's child count: the reserved node
        # makes the first run 0000000001.
        txn.create(self._path("runs", _RESERVED), _dumps({"reserved": "run ids start at 1"}))
        for name in ("locks", "dags", "children"):
            txn.create(self._path(name))
        results = txn.commit()
        if isinstance(results[0], NodeExistsError):  # initialised before (or just now)
            data, _ = self.client.retry(self.client.get, self._path("meta"))
            version = int(_loads(data).get("schema_version", 0))
            if version > SCHEMA_VERSION:
                raise StateStoreError(
                    f"state store {self.display_url} has schema version {version}, newer "
                    f"than this mflow understands ({SCHEMA_VERSION}): upgrade mflow"
                )
        elif not _committed(results):
            raise StateStoreError(f"state store {self.display_url}: cannot create {results}")
        self._ready = True

    def _ensure(self) -> None:
        if not self._ready:
            if self.client.retry(self.client.exists, self._path("meta")) is None:
                self.init()
            self._ready = True

    # ------------------------------------------------------------------ runs and the run lock

    @_zk_errors
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
        dag_index = self._path("dags", _node(run.dag))
        self.client.retry(self.client.ensure_path, dag_index)
        if run.parent_run_id is not None:
            self.client.retry(
                self.client.ensure_path, self._path("children", _id_node(run.parent_run_id))
            )
        for _ in range(LOCK_ATTEMPTS):
            if lock:
                self._free_lock(run.dag)
            path = self.client.create(self._path("runs", ""), _dumps(value), sequence=True)
            run_id = int(path.rsplit("/", 1)[1])
            txn = self.client.transaction()
            if lock:
                txn.create(
                    self._lock_path(run.dag), _dumps(self._lock_value(run_id)), ephemeral=True
                )
            txn.create(f"{path}/tasks")
            txn.create(f"{dag_index}/{_id_node(run_id)}")
            if run.parent_run_id is not None:
                txn.create(self._path("children", _id_node(run.parent_run_id), _id_node(run_id)))
            results = txn.commit()
            if _committed(results):
                if lock:
                    self._held[run.dag] = run_id
                    self._fail_orphans(run.dag, run_id)
                self._known[run_id] = set()
                return _run(run_id, value)
            # The run never existed: another starter took the lock between our look and
            # our create. Look again (and name it, if it is alive).
            self.client.retry(self.client.delete, path)
            if not (lock and isinstance(results[0], NodeExistsError)):
                raise StateStoreError(f"state store {self.display_url}: cannot create {results}")
        raise StateStoreError(
            f"could not take the run lock of DAG '{run.dag}': too much contention"
        )

    def _lock_path(self, dag: str) -> str:
        return self._path("locks", _node(dag))

    def _free_lock(self, dag: str, own_run_id: int | None = None) -> ZnodeStat | None:
        """Make the DAG's lock takeable; the lock's stat when `own_run_id` already holds it.

        Raises RunAlreadyActive for a live holder. A stale one is marked FAILED and its lock
        deleted in one transaction, both conditional on the versions we read.
        """
        try:
            data, lock_stat = self.client.retry(self.client.get, self._lock_path(dag))
        except NoNodeError:
            return None
        holder_id = int(_loads(data)["run_id"])
        if holder_id == own_run_id:
            return lock_stat
        txn = self.client.transaction()
        try:
            holder, raw, run_stat = self._read_run(holder_id)
        except RunNotFound:
            holder = None
        marked = False
        if holder is not None and holder.status is RunState.RUNNING:
            marked = True
            if not is_stale(holder):
                raise RunAlreadyActive(dag, holder.id, holder.host, holder.pid)
            raw.update(status=RunState.FAILED.value, ended_at=time.time())
            txn.set_data(self._run_path(holder_id), _dumps(raw), run_stat.version)
        txn.delete(self._lock_path(dag), version=lock_stat.version)
        results = txn.commit()
        # If that failed, someone else moved first: the caller's next round sees what they did.
        if marked and holder and _committed(results):
            log.warning(
                "run %s of DAG '%s' (host %s, pid %s) is gone: marked FAILED, lock released",
                holder.id, dag, holder.host, holder.pid,
            )  # fmt: skip
        return None

    def _fail_orphans(self, dag: str, own_run_id: int) -> None:
        """We hold the lock, so any other locked RUNNING run of the DAG lost its owner."""
        index = self._path("dags", _node(dag))
        for name in sorted(self.client.retry(self.client.get_children, index), reverse=True):
            run_id = int(name)
            if run_id == own_run_id:
                continue
            try:
                data, stat = self.client.retry(self.client.get, self._run_path(run_id))
            except NoNodeError:
                continue
            value = _loads(data)
            if value.get("status") != RunState.RUNNING.value:
                break
            if not value.get("locked"):
                continue  # a --allow-concurrent run never held the lock
            value.update(status=RunState.FAILED.value, ended_at=time.time())
            try:
                self.client.set(self._run_path(run_id), _dumps(value), version=stat.version)
                log.warning("run %s of DAG '%s' lost its owner: marked FAILED", run_id, dag)
            except (BadVersionError, NoNodeError):
                pass

    @_zk_errors
    def resume_run(self, run_id: int, *, host: str, pid: int, lock: bool = True) -> RunRecord:
        self._ensure()
        for _ in range(LOCK_ATTEMPTS):
            current, value, stat = self._read_run(run_id)
            if current.status is RunState.RUNNING and not self._owner_gone(current, value):
                raise RunAlreadyActive(current.dag, run_id, current.host, current.pid)
            held = self._free_lock(current.dag, own_run_id=run_id) if lock else None
            now = time.time()
            value.update(
                status=RunState.RUNNING.value,
                host=host,
                pid=pid,
                ended_at=None,
                heartbeat_at=now,
                locked=lock,
            )
            txn = self.client.transaction()
            txn.set_data(self._run_path(run_id), _dumps(value), stat.version)
            if held is not None:  # its own lock, left by its dead owner's session: take it over
                txn.delete(self._lock_path(current.dag), version=held.version)
            if lock:
                txn.create(
                    self._lock_path(current.dag), _dumps(self._lock_value(run_id)), ephemeral=True
                )
            results = txn.commit()
            if _committed(results):
                if lock:
                    self._held[current.dag] = run_id
                    self._fail_orphans(current.dag, run_id)
                return _run(run_id, value)
        raise StateStoreError(f"could not resume run {run_id}: too much contention")

    def _owner_gone(self, run: RunRecord, raw: dict[str, Any]) -> bool:
        if is_stale(run):
            return True
        if not raw.get("locked"):
            return False
        try:
            data, _ = self.client.retry(self.client.get, self._lock_path(run.dag))
        except NoNodeError:
            return True  # its ephemeral lock vanished with its session
        return int(_loads(data)["run_id"]) != run.id

    @_zk_errors
    def heartbeat(self, run_id: int, at: float) -> None:
        self._update_run(run_id, heartbeat_at=at)

    @_zk_errors
    def finish_run(self, run_id: int, status: RunState, at: float) -> None:
        for _ in range(LOCK_ATTEMPTS):
            try:
                data, stat = self.client.retry(self.client.get, self._run_path(run_id))
            except NoNodeError:
                raise self._not_found(run_id) from None
            value = _loads(data)
            value.update(status=RunState(status).value, ended_at=at)
            txn = self.client.transaction()
            txn.set_data(self._run_path(run_id), _dumps(value), stat.version)
            lock_path = self._lock_path(value["dag"])
            try:
                lock_data, lock_stat = self.client.retry(self.client.get, lock_path)
                if int(_loads(lock_data)["run_id"]) == run_id:
                    txn.delete(lock_path, version=lock_stat.version)
            except NoNodeError:
                pass
            results = txn.commit()
            if _committed(results):
                if self._held.get(value["dag"]) == run_id:
                    del self._held[value["dag"]]
                self._known.pop(run_id, None)
                return
        raise StateStoreError(f"could not finish run {run_id}: too much contention")

    def _update_run(self, run_id: int, **changes: Any) -> None:
        while True:
            try:
                data, stat = self.client.retry(self.client.get, self._run_path(run_id))
            except NoNodeError:
                raise self._not_found(run_id) from None
            value = {**_loads(data), **changes}
            try:
                self.client.retry(
                    self.client.set, self._run_path(run_id), _dumps(value), stat.version
                )
                return
            except BadVersionError:
                continue  # changed under us (marked FAILED...): apply ours to the new value

    # ------------------------------------------------------------------ task rows

    @_zk_errors
    def add_tasks(self, run_id: int, task_ids: Iterable[str]) -> None:
        self._ensure()
        names = list(dict.fromkeys(_node(t) for t in task_ids))
        data = _dumps({"state": TaskState.NONE.value, "attempt": 0})
        tasks = self._path("runs", _id_node(run_id), "tasks")
        for attempt in range(2):
            present = self._task_nodes(run_id)
            new = [name for name in names if name not in present]
            try:
                self._commit_tasks([(f"{tasks}/{name}", data, False) for name in new])
                break
            except NodeExistsError:
                if attempt:
                    raise
                self._known.pop(run_id, None)  # another process added some: re-read
        present.update(new)

    def _task_nodes(self, run_id: int) -> set[str]:
        """The task nodes of a run, cached: record() needs to know create from set."""
        if run_id not in self._known:
            tasks = self._path("runs", _id_node(run_id), "tasks")
            try:
                self._known[run_id] = set(self.client.retry(self.client.get_children, tasks))
            except NoNodeError:
                raise self._not_found(run_id) from None
        return self._known[run_id]

    @_zk_errors
    def record(self, changes: Sequence[TaskRecord]) -> None:
        if not changes:
            return
        self._ensure()
        # Each change carries every field: writing the last one per task is applying them all.
        latest = {(c.run_id, _node(c.task_id)): _task_value(c) for c in changes}
        for attempt in range(2):
            ops = []
            for (run_id, name), data in latest.items():
                path = self._path("runs", _id_node(run_id), "tasks", name)
                ops.append((path, data, name in self._task_nodes(run_id)))
            try:
                self._commit_tasks(ops)
                break
            except (NodeExistsError, NoNodeError):
                if attempt:
                    raise
                for run_id, _ in latest:  # our cache was wrong (another process): re-read
                    self._known.pop(run_id, None)
        for run_id, name in latest:
            self._task_nodes(run_id).add(name)

    def _commit_tasks(self, ops: list[tuple[str, bytes, bool]]) -> None:
        """Create or set task nodes in as few transactions as the request size allows."""
        start, size = 0, 0
        for index, (path, data, _) in enumerate(ops):
            size += len(path) + len(data) + 32
            if size > MAX_TRANSACTION_BYTES and index > start:
                self._commit(ops[start:index])
                start, size = index, len(path) + len(data) + 32
        if start < len(ops):
            self._commit(ops[start:])

    def _commit(self, ops: list[tuple[str, bytes, bool]]) -> None:
        """One transaction of task-node writes; raises the error of the op that failed."""

        def commit() -> list[Any]:
            txn = self.client.transaction()
            for path, data, exists in ops:
                if exists:
                    txn.set_data(path, data)
                else:
                    txn.create(path, data)
            return txn.commit()

        for result in self.client.retry(commit):
            if isinstance(result, Exception) and not isinstance(result, RolledBackError):
                raise result

    # ------------------------------------------------------------------ queries

    @_zk_errors
    def get_run(self, run_id: int) -> RunRecord:
        self._ensure()
        return self._read_run(run_id)[0]

    def _read_run(self, run_id: int) -> tuple[RunRecord, dict[str, Any], ZnodeStat]:
        try:
            data, stat = self.client.retry(self.client.get, self._run_path(run_id))
        except NoNodeError:
            raise self._not_found(run_id) from None
        value = _loads(data)
        return _run(run_id, value), value, stat

    def _read_runs(self, ids: Sequence[int]) -> list[RunRecord]:
        """Runs by id, fetched in one pipelined round of requests; missing ones skipped."""
        pending = [(run_id, self.client.get_async(self._run_path(run_id))) for run_id in ids]
        found = []
        for run_id, result in pending:
            try:
                data, _ = result.get()
            except NoNodeError:
                continue
            found.append(_run(run_id, _loads(data)))
        return found

    @_zk_errors
    def list_runs(
        self, *, dag: str | None = None, status: RunState | None = None, limit: int = 20
    ) -> list[RunRecord]:
        self._ensure()
        parent = self._path("dags", _node(dag)) if dag is not None else self._path("runs")
        try:
            names = self.client.retry(self.client.get_children, parent)
        except NoNodeError:
            return []
        ids = sorted((int(n) for n in names if n.isdigit() and n != _RESERVED), reverse=True)
        wanted = None if status is None else RunState(status)
        found: list[RunRecord] = []
        batch = max(limit, 1) * (1 if wanted is None else 4)
        for start in range(0, len(ids), batch):
            for run in self._read_runs(ids[start : start + batch]):
                if wanted is None or run.status is wanted:
                    found.append(run)
                    if len(found) == limit:
                        return found
        return found

    @_zk_errors
    def tasks(self, run_id: int) -> list[TaskRecord]:
        self._ensure()
        tasks = self._path("runs", _id_node(run_id), "tasks")
        try:
            names = sorted(self.client.retry(self.client.get_children, tasks))
        except NoNodeError:
            return []
        pending = [(name, self.client.get_async(f"{tasks}/{name}")) for name in names]
        records = []
        for name, result in pending:
            try:
                data, _ = result.get()
            except NoNodeError:
                continue
            records.append(_task(run_id, unquote(name), _loads(data)))
        return records

    @_zk_errors
    def child_runs(self, run_id: int) -> list[RunRecord]:
        self._ensure()
        try:
            names = self.client.retry(
                self.client.get_children, self._path("children", _id_node(run_id))
            )
        except NoNodeError:
            return []
        return self._read_runs(sorted(int(name) for name in names))

    def close(self) -> None:
        self.client.remove_listener(self._on_state)
        self.client.stop()
        self.client.close()

    def _not_found(self, run_id: int) -> RunNotFound:
        return RunNotFound(f"run {run_id} not found in state store {self.display_url}")


# ---------------------------------------------------------------------- JSON <-> records


def _committed(results: list[Any]) -> bool:
    """A kazoo transaction's results hold exceptions, not raise them."""
    return not any(isinstance(result, Exception) for result in results)


def _run(run_id: int, value: dict[str, Any]) -> RunRecord:
    return RunRecord(
        id=run_id,
        dag=value["dag"],
        taskfile=value.get("taskfile") or "",
        status=RunState(value["status"]),
        host=value.get("host") or "",
        pid=int(value.get("pid") or 0),
        started_at=float(value["started_at"]),
        ended_at=value.get("ended_at"),
        heartbeat_at=float(value["heartbeat_at"]),
        log_directory=value.get("log_directory") or "",
        parent_run_id=value.get("parent_run_id"),
        parent_task_id=value.get("parent_task_id"),
    )


def _task(run_id: int, task_id: str, value: dict[str, Any]) -> TaskRecord:
    return TaskRecord(
        run_id=run_id,
        task_id=task_id,
        state=TaskState(value.get("state", TaskState.NONE.value)),
        attempt=int(value.get("attempt", 0)),
        started_at=value.get("started_at"),
        ended_at=value.get("ended_at"),
        exit_code=value.get("exit_code"),
        pid=value.get("pid"),
        host=value.get("host"),
        log_path=value.get("log_path"),
        reason=value.get("reason"),
    )


def _task_value(change: TaskRecord) -> bytes:
    reason = change.reason
    if reason is not None and len(reason) > REASON_LENGTH:
        reason = reason[: REASON_LENGTH - 3] + "..."
    value = {
        "state": TaskState(change.state).value,
        "attempt": change.attempt,
        "started_at": change.started_at,
        "ended_at": change.ended_at,
        "exit_code": change.exit_code,
        "pid": change.pid,
        "host": change.host,
        "log_path": change.log_path,
        "reason": reason,
    }
    return _dumps({k: v for k, v in value.items() if v is not None})
