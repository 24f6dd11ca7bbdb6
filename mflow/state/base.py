"""The state store interface: runs, task instances, the per-DAG run lock.

Two implementations share it: `sql.SqlStore` (SQLAlchemy Core: SQLite, PostgreSQL, Oracle) and
`zookeeper.ZooKeeperStore` (kazoo). tests/integration/test_state_contract.py runs one suite
against every backend.

Times are UTC epoch seconds (floats). A run's id is an integer the store assigns. The run lock
allows one active run per DAG name per store: `start_run(..., lock=True)` takes it atomically
or raises `RunAlreadyActive`; a holder whose owner is gone (same host and pid dead, or no
heartbeat for `STALE_AFTER` seconds) is marked FAILED and released first.
"""

from __future__ import annotations

import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mflow.errors import StateStoreError
from mflow.states import PartitionStatus, RunState, TaskState

SCHEMA_VERSION = 2  # 2: task definitions, stop requests, the store's id
HEARTBEAT_INTERVAL = 10.0  # seconds between heartbeats of a live run
STALE_AFTER = 60.0  # a run on another host with no heartbeat for this long is gone


@dataclass(frozen=True)
class NewRun:
    """What a run is, when it starts."""

    dag: str
    taskfile: str
    host: str
    pid: int
    started_at: float
    log_directory: str = ""
    parent_run_id: int | None = None
    parent_task_id: str | None = None


@dataclass(frozen=True)
class RunRecord:
    id: int
    dag: str
    taskfile: str
    status: RunState
    host: str
    pid: int
    started_at: float
    ended_at: float | None
    heartbeat_at: float
    log_directory: str = ""
    parent_run_id: int | None = None
    parent_task_id: str | None = None
    note: str | None = None  # why it ended as it did when no task says ("owner gone")


OWNER_GONE = "owner gone"


@dataclass(frozen=True)
class TaskRecord:
    """One task of one run: its current state and its latest attempt's details."""

    run_id: int
    task_id: str
    state: TaskState = TaskState.NONE
    attempt: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    pid: int | None = None
    host: str | None = None
    log_path: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class DagSummary:
    """A DAG the store has runs of (child DAGs too): how many, and the latest."""

    dag: str
    runs: int
    last_run: RunRecord


@dataclass(frozen=True)
class Dataset:
    """A named dataset: fields that may use ${dataid} (`path`, `table`...)."""

    name: str
    fields: Mapping[str, str]
    updated_at: float = 0.0


@dataclass(frozen=True)
class Partition:
    """One (dataset, dataid) and who set its status, when."""

    dataset: str
    dataid: str
    status: PartitionStatus
    job: str | None = None
    run_id: int | None = None
    host: str | None = None
    pid: int | None = None
    updated_at: float = 0.0
    heartbeat_at: float = 0.0


@dataclass(frozen=True)
class Claim:
    """Who claims a partition: a `runjob` process."""

    job: str
    host: str
    pid: int


@dataclass(frozen=True)
class JobRecord:
    """A recurring job as stored: its document (SPEC §5) and where its paths resolve."""

    name: str
    document: Mapping[str, Any]
    base_dir: str = ""
    enabled: bool = True
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class Fire:
    """One slot of a job (the fire key: job, kind, slot) and what became of it."""

    job: str
    slot: float  # UTC epoch seconds; a manual trigger's is the trigger time
    kind: str = "scheduled"  # or "manual"
    outcome: str = "FIRED"  # FIRED or SKIPPED
    reason: str | None = None  # SKIPPED: missed, conflict: B, waiting for: A, max_active, paused
    run_id: int | None = None
    host: str | None = None
    epoch: int | None = None  # the leader's epoch that claimed it (None: a manual trigger)
    at: float = 0.0


@dataclass(frozen=True)
class Lease:
    """Who leads the schedulers, since when, and the epoch each takeover increases."""

    holder: str
    hostname: str
    epoch: int
    since: float
    expires_at: float = 0.0


@dataclass(frozen=True)
class Member:
    """A scheduler that runs (leader or standing by)."""

    name: str
    hostname: str
    pid: int
    since: float
    heartbeat_at: float


class StateStore(ABC):
    """Where runs and task states are kept. Methods are called from one thread at a time."""

    #: the store's URL with any password masked, for messages
    display_url: str

    @abstractmethod
    def init(self) -> None:
        """Create what the store needs (tables, znodes). Idempotent."""

    @abstractmethod
    def start_run(self, run: NewRun, *, lock: bool = True) -> RunRecord:
        """Create a RUNNING run; with `lock`, take the DAG's run lock in the same step.

        Raises RunAlreadyActive naming the live holder. A stale holder is marked FAILED and
        its lock released first.
        """

    @abstractmethod
    def resume_run(self, run_id: int, *, host: str, pid: int, lock: bool = True) -> RunRecord:
        """Take over run `run_id`: RUNNING again, owned by host/pid, lock taken as above.

        Raises RunNotFound, or RunAlreadyActive when its owner is still alive.
        """

    @abstractmethod
    def add_tasks(self, run_id: int, task_ids: Iterable[str]) -> None:
        """Rows in state NONE for the tasks of `run_id` that have none yet."""

    @abstractmethod
    def record(self, changes: Sequence[TaskRecord]) -> None:
        """Write task rows (every field), in order, as one transaction."""

    @abstractmethod
    def heartbeat(self, run_id: int, at: float) -> None:
        """The run's owner is alive."""

    @abstractmethod
    def finish_run(self, run_id: int, status: RunState, at: float) -> None:
        """Set the final status and end time; release the DAG's lock if this run holds it."""

    @abstractmethod
    def get_run(self, run_id: int) -> RunRecord:
        """Raises RunNotFound."""

    @abstractmethod
    def list_runs(
        self,
        *,
        dag: str | None = None,
        status: RunState | None = None,
        limit: int = 20,
        top_level: bool = False,
        before: int | None = None,
    ) -> list[RunRecord]:
        """Most recent first; `top_level`: only runs that are not a child run; `before`: only
        runs with a smaller id (the next page)."""

    @abstractmethod
    def tasks(self, run_id: int) -> list[TaskRecord]:
        """The task rows of a run (any order)."""

    @abstractmethod
    def child_runs(self, run_id: int) -> list[RunRecord]:
        """Runs whose parent is `run_id`, oldest first."""

    # ---------------------------------------------------------------- operations (SPEC §11)

    @abstractmethod
    def store_id(self) -> str:
        """This store's identity: a random id made when it was initialised. Task log names
        carry it when a log directory is shared with another store (mflow.logs)."""

    @abstractmethod
    def set_definitions(self, run_id: int, snapshot: bytes) -> None:
        """What the run's DAG was (`mflow.plan.snapshot`), replacing any."""

    @abstractmethod
    def definitions(self, run_id: int) -> bytes | None:
        """What `set_definitions` wrote, or None (a run recorded before there was one)."""

    @abstractmethod
    def remove_tasks(self, run_id: int, task_ids: Iterable[str]) -> None:
        """Drop these task rows of a run (tasks removed from an edited DAG)."""

    @abstractmethod
    def request_stop(self, run_id: int, by: str) -> None:
        """Ask the run's owner to stop it (seen by its store writer within seconds)."""

    @abstractmethod
    def stop_requested(self, run_id: int) -> str | None:
        """Who asked this run to stop, or None."""

    @abstractmethod
    def mark_gone(self, run: RunRecord, at: float) -> bool:
        """Mark `run`, RUNNING with an owner that is gone, FAILED and release its lock, only
        if the store still holds it as it was read (status, heartbeat, pid). True if done."""

    @abstractmethod
    def dags(self) -> list[DagSummary]:
        """Every DAG the store has runs of, by name."""

    @abstractmethod
    def ended_before(self, at: float, dag: str | None = None) -> list[RunRecord]:
        """Runs (child runs included) that ended before `at`, oldest first."""

    @abstractmethod
    def delete_runs(self, run_ids: Iterable[int]) -> None:
        """Delete runs with their task rows and what else is kept of them."""

    # ---------------------------------------------------------------- partitions (SPEC §6)

    @abstractmethod
    def put_dataset(self, dataset: Dataset) -> bool:
        """Create or replace a dataset; True when it is new."""

    @abstractmethod
    def datasets(self) -> list[Dataset]:
        """Every dataset, by name."""

    @abstractmethod
    def set_partition(self, partition: Partition) -> None:
        """Write a partition's status as given (`mflow data set`, the end of a runjob)."""

    @abstractmethod
    def partitions(
        self, dataset: str | None = None, status: PartitionStatus | None = None
    ) -> list[Partition]:
        """Partitions by dataset, then dataid."""

    @abstractmethod
    def claim_partition(
        self, claim: Claim, inputs: Sequence[str], output: str, dataid: str | None = None
    ) -> Partition | None:
        """Atomically take the smallest dataid (or `dataid`) whose inputs are all READY and
        whose output partition is absent, RESUBMIT, or RUNNING for a claimer that is gone:
        the output partition becomes RUNNING, owned by `claim`. None: nothing is ready.
        Any number of claimers on any hosts never take the same partition twice."""

    @abstractmethod
    def heartbeat_partition(self, dataset: str, dataid: str, claim: Claim) -> None:
        """The claimer of a RUNNING partition is alive."""

    # ---------------------------------------------------------------- jobs (SPEC §5)

    @abstractmethod
    def put_job(self, job: JobRecord, *, create: bool) -> bool:
        """Create (`create`, False when the name exists) or replace (False when missing)."""

    @abstractmethod
    def get_job(self, name: str) -> JobRecord | None: ...

    @abstractmethod
    def list_jobs(self) -> list[JobRecord]:
        """Every job, by name."""

    @abstractmethod
    def delete_job(self, name: str) -> bool: ...

    @abstractmethod
    def set_job_enabled(self, name: str, enabled: bool) -> bool: ...

    @abstractmethod
    def claim_fire(self, fire: Fire) -> bool:
        """Record a slot's outcome before anything starts: at most once per (job, kind,
        slot). With `fire.epoch` set, in the same transaction as the check that no newer
        epoch exists (fencing: a leader that was paused through a takeover claims nothing).
        False: claimed already, or fenced out."""

    def claim_fires(self, fires: Sequence[Fire]) -> list[bool]:
        """`claim_fire` for many slots (one turn of the leader), each claimed or not; stores
        override it to claim them in as few transactions as they can."""
        return [self.claim_fire(fire) for fire in fires]

    @abstractmethod
    def set_fire_run(self, fire: Fire, run_id: int | None, reason: str | None = None) -> None:
        """The run a claimed slot started (or why none could start)."""

    @abstractmethod
    def fires(self, job: str, limit: int = 20, kind: str | None = None) -> list[Fire]:
        """A job's slots, newest first."""

    @abstractmethod
    def last_slots(self, kind: str = "scheduled") -> dict[str, float]:
        """Each job's newest slot of that kind, in one request (what a new leader's first turn
        starts from); jobs with none are absent."""

    @abstractmethod
    def acquire_lease(self, holder: str, hostname: str, ttl: float) -> Lease | None:
        """Lead, or keep leading: a new epoch when taking over (none held, or expired), the
        same when `holder` holds it (renewed). None while another holds an unexpired one."""

    @abstractmethod
    def renew_lease(self, lease: Lease, ttl: float) -> bool:
        """Still the leader at that epoch (renewed); False: another took over."""

    @abstractmethod
    def release_lease(self, lease: Lease) -> None:
        """Give up leadership at once (the others take over at their next look)."""

    @abstractmethod
    def leader(self) -> Lease | None:
        """The current leader, if its lease holds."""

    @abstractmethod
    def join(self, member: Member) -> None:
        """Register (or heartbeat) a scheduler."""

    @abstractmethod
    def leave(self, name: str) -> None: ...

    @abstractmethod
    def members(self) -> list[Member]:
        """Schedulers with a recent heartbeat, by name."""

    def close(self) -> None:  # noqa: B027 - optional for stores holding nothing open
        """Release connections."""

    def latest_run(self, dag: str | None = None, *, top_level: bool = False) -> RunRecord | None:
        runs = self.list_runs(dag=dag, limit=1, top_level=top_level)
        return runs[0] if runs else None


def schema_too_new(display_url: str, version: int) -> StateStoreError:
    """The error of a store made by a newer mflow (every backend says the same)."""
    return StateStoreError(
        f"state store {display_url} has schema version {version}, newer than this mflow "
        f"understands ({SCHEMA_VERSION}): upgrade mflow"
    )


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(run: RunRecord, now: float | None = None) -> bool:
    """The run's owner is gone: same host and its pid dead, or no heartbeat for STALE_AFTER."""
    if run.status is not RunState.RUNNING:
        return True
    return is_stale_owner(run.host, run.pid, run.heartbeat_at, now)


def is_stale_owner(host: str, pid: int, heartbeat_at: float, now: float | None = None) -> bool:
    """An owner (of a run, of a partition claim) is gone: on this host and its pid dead, or
    no heartbeat for STALE_AFTER seconds."""
    now = time.time() if now is None else now
    if now - heartbeat_at > STALE_AFTER:
        return True
    return host == this_host() and not pid_alive(pid)
