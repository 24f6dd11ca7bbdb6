"""The SQL state store: SQLite (the default), PostgreSQL and Oracle, one SQLAlchemy Core path.

The tables, and how records map to their rows, are in `ddl.py`. Every method works on a store
nobody has `init`ed: the first call of a store instance checks for the schema once and creates
it when it is missing (operators forget `mflow db init`; the default SQLite store must just
work).

Concurrency. The run lock is a row of `mflow_locks` keyed by DAG name, inserted in the same
transaction as the run it names; the primary key makes "exactly one starter wins" the
database's job. On PostgreSQL and Oracle a racing starter blocks on the winner's uncommitted
key, then gets an IntegrityError, rolls back everything (no orphan run row) and looks again.
Stale holders are released by compare-and-set: the holder is marked FAILED only if its row
still has the heartbeat we judged, and its lock row deleted only if it still names it.

Connections are set up in `sql_engine.py`: timeouts, and for SQLite the WAL, busy_timeout and
`BEGIN IMMEDIATE` that let many mflow processes share one file (and what that trades off).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mflow.errors import BackendUnavailable, RunAlreadyActive, RunNotFound, StateStoreError
from mflow.state.base import (
    OWNER_GONE,
    SCHEMA_VERSION,
    NewRun,
    RunRecord,
    StateStore,
    TaskRecord,
    is_stale,
    schema_too_new,
)
from mflow.state.ddl import (
    ADD_TASK,
    SCHEMA_VERSION_KEY,
    UPDATE_TASK,
    DriverStatement,
    add_missing_columns,
    ddl,
    from_db_time,
    locks,
    meta,
    metadata,
    run_from_row,
    runs,
    stored_time,
    task_from_row,
    task_runs,
    task_values,
    to_db_time,
)
from mflow.state.sql_engine import DEFERRED, create_store_engine
from mflow.state.sql_jobs import SqlJobs
from mflow.state.sql_ops import SqlOperations
from mflow.state.sql_partitions import SqlPartitions
from mflow.states import RunState, TaskState

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.sql.dml import UpdateBase

    from mflow.state import StoreLocation

__all__ = ["SqlStore", "ddl", "from_db_time", "to_db_time"]

log = logging.getLogger(__name__)

LOCK_ATTEMPTS = 5  # look-and-take rounds before giving up on a contended run lock
INIT_ATTEMPTS = 3


class _Contended(Exception):
    """The lock or its holder changed between our read and our write: look again."""


class SqlStore(SqlOperations, SqlPartitions, SqlJobs, StateStore):
    """Runs, task rows and run locks in `mflow_` tables (ddl.py); operations in sql_ops.py."""

    def __init__(self, location: StoreLocation) -> None:
        self.display_url = location.display
        self._ready = False
        self._statements: dict[UpdateBase, DriverStatement] = {}  # see _driver_statement
        self.engine: Engine = create_store_engine(location, self.display_url)

    # ------------------------------------------------------------------ connections, schema

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[Connection]:
        """One transaction; connection failures become BackendUnavailable."""
        try:
            conn = self.engine.connect()
        except sa.exc.DBAPIError as exc:
            raise self._fault(exc) or self._unavailable(exc) from None
        with conn:
            if not write:
                conn.execution_options(**{DEFERRED: True})
            try:
                transaction = conn.begin()
            except sa.exc.OperationalError as exc:  # e.g. SQLite still locked after the timeout
                raise self._fault(exc) or self._unavailable(exc) from None
            try:
                with transaction:
                    yield conn
            except sa.exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    raise self._unavailable(exc) from None
                fault = self._fault(exc)
                if fault is not None:
                    raise fault from None
                raise

    def _fault(self, exc: sa.exc.DBAPIError) -> BackendUnavailable | None:
        """A store that cannot be used as it is (a read-only or damaged SQLite file): one
        line saying so. None for anything else (a lost race, a bug: the caller decides)."""
        if self.engine.dialect.name != "sqlite" or isinstance(exc, sa.exc.IntegrityError):
            return None
        message = str(getattr(exc, "orig", exc))
        file = self.engine.url.database
        if "readonly database" in message or "read-only" in message:
            return BackendUnavailable(
                f"state store {self.display_url} cannot be written: {file} is read-only ({message})"
            )
        if any(m in message for m in ("malformed", "not a database", "disk I/O error")):
            return BackendUnavailable(
                f"the state store {self.display_url} is damaged ({message}): restore {file} "
                "from a backup, or move it away to start a new store"
            )
        if "unable to open database file" in message:
            return BackendUnavailable(f"state store {self.display_url} cannot open {file}")
        return None

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"state store {self.display_url} cannot be reached: {self._reason(exc)}"
        )

    def _reason(self, exc: BaseException, *, first_line: bool = False) -> str:
        """The driver's message on one line (or only its first: PostgreSQL adds the
        statement), without the password, at most 300 characters."""
        text = str(getattr(exc, "orig", None) or exc)
        if first_line:
            text = text.strip().partition("\n")[0]
        reason = " ".join(text.split()) or type(exc).__name__
        password = self.engine.url.password
        if password:
            reason = reason.replace(str(password), "***")
        return reason[:297] + "..." if len(reason) > 300 else reason

    def init(self) -> None:
        for attempt in range(1, INIT_ATTEMPTS + 1):
            try:
                with self._transaction() as conn:
                    metadata.create_all(conn, checkfirst=True)
                    add_missing_columns(conn)
                    for table in metadata.sorted_tables:  # indexes added to older stores' tables
                        for index in table.indexes:
                            index.create(conn, checkfirst=True)
                    self._write_version(conn)
                break
            except sa.exc.DBAPIError as exc:
                # Another process created a table (or the version row) between our check and
                # our CREATE; the next round's checkfirst sees it. Still failing: the database
                # refuses (no schema selected, no CREATE permission...): say so in one line.
                if attempt == INIT_ATTEMPTS:
                    reason = self._reason(exc, first_line=True)
                    raise StateStoreError(
                        f"state store {self.display_url}: cannot create mflow's tables: "
                        f"{reason} (give mflow a schema it may create tables in, or have them "
                        "created from `mflow db init --sql`)"
                    ) from None
                time.sleep(0.1 * attempt)
        self._ready = True

    def _write_version(self, conn: Connection) -> None:
        where = meta.c.name == SCHEMA_VERSION_KEY
        current = conn.scalar(sa.select(meta.c.value).where(where))
        if current is None:
            conn.execute(sa.insert(meta).values(name=SCHEMA_VERSION_KEY, value=str(SCHEMA_VERSION)))
        elif self._check_version(current) < SCHEMA_VERSION:
            conn.execute(sa.update(meta).where(where).values(value=str(SCHEMA_VERSION)))

    def _check_version(self, value: str) -> int:
        version = int(value)
        if version > SCHEMA_VERSION:
            raise schema_too_new(self.display_url, version)
        return version

    def _ensure_schema(self) -> None:
        """Create the tables on first use when nobody ran `mflow db init` (once per store)."""
        if self._ready:
            return
        try:
            with self._transaction(write=False) as conn:
                version = conn.scalar(
                    sa.select(meta.c.value).where(meta.c.name == SCHEMA_VERSION_KEY)
                )
        except sa.exc.DBAPIError:
            version = None  # no mflow_meta table yet
        if version is None or self._check_version(version) < SCHEMA_VERSION:
            self.init()  # a new store, or an older one: create what it lacks
        else:
            self._ready = True

    # ------------------------------------------------------------------ runs and the run lock

    def start_run(self, run: NewRun, *, lock: bool = True) -> RunRecord:
        self._ensure_schema()
        values = {
            "dag": run.dag,
            "taskfile": run.taskfile,
            "status": RunState.RUNNING.value,
            "host": run.host,
            "pid": run.pid,
            "started_at": to_db_time(run.started_at),
            "heartbeat_at": to_db_time(run.started_at),
            "log_directory": run.log_directory,
            "parent_run_id": run.parent_run_id,
            "parent_task_id": run.parent_task_id,
        }
        for _ in range(LOCK_ATTEMPTS):
            try:
                with self._transaction() as conn:
                    if lock:
                        self._free_lock(conn, run.dag)
                    run_id = conn.execute(sa.insert(runs).values(values)).inserted_primary_key[0]
                    if lock:
                        conn.execute(
                            sa.insert(locks).values(
                                dag=run.dag, run_id=run_id, acquired_at=to_db_time(time.time())
                            )
                        )
            except (sa.exc.IntegrityError, _Contended):
                continue  # another starter won the race between our look and our insert
            return RunRecord(
                id=int(run_id),
                dag=run.dag,
                taskfile=run.taskfile,
                status=RunState.RUNNING,
                host=run.host,
                pid=run.pid,
                started_at=stored_time(run.started_at),
                ended_at=None,
                heartbeat_at=stored_time(run.started_at),
                log_directory=run.log_directory,
                parent_run_id=run.parent_run_id,
                parent_task_id=run.parent_task_id,
            )
        raise StateStoreError(
            f"could not take the run lock of DAG '{run.dag}': too much contention"
        )

    def _free_lock(self, conn: Connection, dag: str, own_run_id: int | None = None) -> bool:
        """Make the DAG's lock takeable; True when `own_run_id` already holds it.

        Raises RunAlreadyActive for a live holder; a stale one is marked FAILED and its lock
        row deleted, both compare-and-set (_Contended when someone else moved first).
        """
        holder_id = conn.scalar(sa.select(locks.c.run_id).where(locks.c.dag == dag))
        if holder_id is None:
            return False
        if holder_id == own_run_id:
            return True
        row = conn.execute(sa.select(runs).where(runs.c.id == holder_id)).first()
        if row is not None and row.status == RunState.RUNNING.value:
            holder = run_from_row(row)
            if not is_stale(holder):
                raise RunAlreadyActive(dag, holder.id, holder.host, holder.pid)
            marked = conn.execute(
                sa.update(runs)
                .where(runs.c.id == holder_id, runs.c.status == RunState.RUNNING.value)
                .where(_same(runs.c.heartbeat_at, row.heartbeat_at))
                .values(
                    status=RunState.FAILED.value, ended_at=to_db_time(time.time()), note=OWNER_GONE
                )
            ).rowcount
            if marked != 1:
                raise _Contended
            log.warning(
                "run %s of DAG '%s' (host %s, pid %s) is gone: marked FAILED, lock released",
                holder.id, dag, holder.host, holder.pid,
            )  # fmt: skip
        deleted = conn.execute(
            sa.delete(locks).where(locks.c.dag == dag, locks.c.run_id == holder_id)
        ).rowcount
        if deleted != 1:
            raise _Contended
        return False

    def resume_run(self, run_id: int, *, host: str, pid: int, lock: bool = True) -> RunRecord:
        self._ensure_schema()
        for _ in range(LOCK_ATTEMPTS):
            try:
                with self._transaction() as conn:
                    row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
                    if row is None:
                        raise self._not_found(run_id)
                    current = run_from_row(row)
                    if current.status is RunState.RUNNING and not is_stale(current):
                        raise RunAlreadyActive(current.dag, run_id, current.host, current.pid)
                    held = lock and self._free_lock(conn, current.dag, own_run_id=run_id)
                    now = time.time()
                    changed = conn.execute(
                        sa.update(runs)
                        .where(runs.c.id == run_id, runs.c.status == row.status)
                        .where(_same(runs.c.heartbeat_at, row.heartbeat_at))
                        .where(_same(runs.c.pid, row.pid))
                        .values(
                            status=RunState.RUNNING.value,
                            ended_at=None,
                            host=host,
                            pid=pid,
                            heartbeat_at=to_db_time(now),
                            note=None,
                        )
                    ).rowcount
                    if changed != 1:
                        raise _Contended  # another process resumed it first
                    if held:
                        conn.execute(
                            sa.update(locks)
                            .where(locks.c.dag == current.dag, locks.c.run_id == run_id)
                            .values(acquired_at=to_db_time(now))
                        )
                    elif lock:
                        conn.execute(
                            sa.insert(locks).values(
                                dag=current.dag, run_id=run_id, acquired_at=to_db_time(now)
                            )
                        )
            except (sa.exc.IntegrityError, _Contended):
                continue
            return replace(
                current,
                status=RunState.RUNNING,
                host=host,
                pid=pid,
                ended_at=None,
                heartbeat_at=stored_time(now),
                note=None,
            )
        raise StateStoreError(f"could not resume run {run_id}: too much contention")

    def heartbeat(self, run_id: int, at: float) -> None:
        self._ensure_schema()
        with self._transaction() as conn:
            changed = conn.execute(
                sa.update(runs).where(runs.c.id == run_id).values(heartbeat_at=to_db_time(at))
            ).rowcount
        if changed == 0:
            raise self._not_found(run_id)

    def finish_run(self, run_id: int, status: RunState, at: float) -> None:
        self._ensure_schema()
        with self._transaction() as conn:
            dag = conn.scalar(sa.select(runs.c.dag).where(runs.c.id == run_id))
            if dag is None:
                raise self._not_found(run_id)
            conn.execute(
                sa.update(runs)
                .where(runs.c.id == run_id)
                .values(status=RunState(status).value, ended_at=to_db_time(at))
            )
            conn.execute(sa.delete(locks).where(locks.c.dag == dag, locks.c.run_id == run_id))

    # ------------------------------------------------------------------ task rows

    def add_tasks(self, run_id: int, task_ids: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(task_ids))
        if not wanted:
            return
        self._ensure_schema()
        with self._transaction() as conn:
            present = set(
                conn.scalars(sa.select(task_runs.c.task_id).where(task_runs.c.run_id == run_id))
            )
            rows = [
                {"run_id": run_id, "task_id": task_id, "state": TaskState.NONE.value, "attempt": 0}
                for task_id in wanted
                if task_id not in present
            ]
            if rows:
                insert = self._driver_statement(ADD_TASK)
                conn.exec_driver_sql(insert.sql, insert.rows(rows))

    def _driver_statement(self, statement: UpdateBase) -> DriverStatement:
        """`statement` compiled for this store's dialect, once."""
        compiled = self._statements.get(statement)  # (statements hash by identity)
        if compiled is None:
            compiled = self._statements[statement] = DriverStatement(statement, self.engine.dialect)
        return compiled

    def record(self, changes: Sequence[TaskRecord]) -> None:
        if not changes:
            return
        self._ensure_schema()
        # Every change carries every column, so applying them in order is the same as writing
        # the last change of each task: one UPDATE per task, sent as one executemany. (Most
        # batches hold a task's RUNNING and its end: only the end is converted.)
        last = {(c.run_id, c.task_id): c for c in changes}
        latest = {key: task_values(c) for key, c in last.items()}
        params = [{"run_id": r, "task_id": t, **values} for (r, t), values in latest.items()]
        update = self._driver_statement(UPDATE_TASK)
        with self._transaction() as conn:
            updated = conn.exec_driver_sql(update.sql, update.rows(params)).rowcount
            if updated == len(params):
                return
            # Rare: rows add_tasks did not create. Find them and insert them.
            present: set[tuple[int, str]] = set()
            for run_id in {r for r, _ in latest}:
                ids = conn.scalars(
                    sa.select(task_runs.c.task_id).where(task_runs.c.run_id == run_id)
                )
                present.update((run_id, task_id) for task_id in ids)
            missing = [
                {"run_id": r, "task_id": t, **values}
                for (r, t), values in latest.items()
                if (r, t) not in present
            ]
            if missing:
                conn.execute(sa.insert(task_runs), missing)

    # ------------------------------------------------------------------ queries

    def get_run(self, run_id: int) -> RunRecord:
        self._ensure_schema()
        with self._transaction(write=False) as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).first()
        if row is None:
            raise self._not_found(run_id)
        return run_from_row(row)

    def list_runs(
        self,
        *,
        dag: str | None = None,
        status: RunState | None = None,
        limit: int = 20,
        top_level: bool = False,
        before: int | None = None,
    ) -> list[RunRecord]:
        self._ensure_schema()
        query = sa.select(runs).order_by(runs.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(runs.c.id < before)
        if top_level:
            query = query.where(runs.c.parent_run_id.is_(None))
        if dag is not None:
            query = query.where(runs.c.dag == dag)
        if status is not None:
            query = query.where(runs.c.status == RunState(status).value)
        with self._transaction(write=False) as conn:
            return [run_from_row(row) for row in conn.execute(query)]

    def tasks(self, run_id: int) -> list[TaskRecord]:
        self._ensure_schema()
        query = (
            sa.select(task_runs).where(task_runs.c.run_id == run_id).order_by(task_runs.c.task_id)
        )
        with self._transaction(write=False) as conn:
            return [task_from_row(row) for row in conn.execute(query)]

    def child_runs(self, run_id: int) -> list[RunRecord]:
        self._ensure_schema()
        query = sa.select(runs).where(runs.c.parent_run_id == run_id).order_by(runs.c.id)
        with self._transaction(write=False) as conn:
            return [run_from_row(row) for row in conn.execute(query)]

    def close(self) -> None:
        self.engine.dispose()

    def _not_found(self, run_id: int) -> RunNotFound:
        return RunNotFound(f"run {run_id} not found in state store {self.display_url}")


# ---------------------------------------------------------------------- rows <-> records


def _same(column: sa.ColumnElement[Any], value: Any) -> sa.ColumnElement[bool]:
    """column = value, NULL-safe (for compare-and-set on what we read)."""
    return column.is_(None) if value is None else column == value
