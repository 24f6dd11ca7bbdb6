"""The SQL state store's schema: the `mflow_` tables, their DDL, and records as rows.

`sql.SqlStore` creates these tables itself (`mflow db init`, or lazily on first use); `ddl()`
prints the same statements for a DBA who creates them by hand (`mflow db init --sql --dialect
oracle`). Names stay within Oracle's 30 characters and avoid its reserved words, so one
definition serves SQLite, PostgreSQL and Oracle 12c+.

Times are naive UTC `TIMESTAMP` columns (microseconds kept; a DBA reads them as they are).
`DateTime` would map to Oracle's `DATE`, which drops the fraction of a second.

Two statements are kept here ready-made (`DriverStatement`): the task-row UPDATE of
`SqlStore.record`, the store's hot path, compiled once next to `task_values` whose keys it
binds, and the INSERT of a run's task rows (`SqlStore.add_tasks`, 10,000 rows for a big DAG).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.schema import CreateIndex, CreateTable

from mflow.state.base import SCHEMA_VERSION, RunRecord, TaskRecord
from mflow.states import STATE_TEXT, RunState, TaskState

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Dialect, Row
    from sqlalchemy.sql.dml import UpdateBase

REASON_LENGTH = 1000  # task_runs.reason; longer reasons are truncated on write
EPOCH = datetime(1970, 1, 1)

metadata = sa.MetaData()

meta = sa.Table(
    "mflow_meta",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255)),
)

runs = sa.Table(
    "mflow_runs",
    metadata,
    # Identity(): IDENTITY columns on PostgreSQL and Oracle 12c+, INTEGER PRIMARY KEY on SQLite;
    # AUTOINCREMENT there so that an id is never handed out twice, even after deletions.
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("dag", sa.String(200), nullable=False),
    sa.Column("taskfile", sa.String(1000)),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("started_at", sa.TIMESTAMP()),
    sa.Column("ended_at", sa.TIMESTAMP()),
    sa.Column("heartbeat_at", sa.TIMESTAMP()),
    sa.Column("log_directory", sa.String(1000)),
    sa.Column("parent_run_id", sa.Integer, nullable=True),
    sa.Column("parent_task_id", sa.String(200), nullable=True),
    sa.Column("note", sa.String(300), nullable=True),  # since schema version 2
    sa.Index("ix_mflow_runs_dag_id", "dag", "id"),
    sa.Index("ix_mflow_runs_parent", "parent_run_id"),
    sa.Index("ix_mflow_runs_ended", "ended_at"),
    sqlite_autoincrement=True,
)

task_runs = sa.Table(
    "mflow_task_runs",
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True),
    sa.Column("task_id", sa.String(200), primary_key=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", sa.TIMESTAMP()),
    sa.Column("ended_at", sa.TIMESTAMP()),
    sa.Column("exit_code", sa.Integer),
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String(255)),
    sa.Column("log_path", sa.String(1000)),
    sa.Column("reason", sa.String(REASON_LENGTH)),
)

locks = sa.Table(
    "mflow_locks",
    metadata,
    sa.Column("dag", sa.String(200), primary_key=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.TIMESTAMP()),
)

# One row per run: what its DAG was (mflow.plan.snapshot: the files, compressed).
run_defs = sa.Table(
    "mflow_run_defs",
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True),
    sa.Column("snapshot", sa.LargeBinary, nullable=False),
)

# `mflow stop` for a run owned by a process on another host: its writer looks here.
stops = sa.Table(
    "mflow_stops",
    metadata,
    sa.Column("run_id", sa.Integer, primary_key=True),
    sa.Column("requested_at", sa.TIMESTAMP()),
    sa.Column("requested_by", sa.String(300)),
)

# Partition-aware jobs (SPEC §6): datasets, and each (dataset, dataid) with its status.
datasets = sa.Table(
    "mflow_datasets",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("fields", sa.Text, nullable=False),  # JSON object
    sa.Column("updated_at", sa.TIMESTAMP()),
)

partitions = sa.Table(
    "mflow_partitions",
    metadata,
    sa.Column("dataset", sa.String(200), primary_key=True),
    sa.Column("dataid", sa.String(200), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("job", sa.String(200)),
    sa.Column("run_id", sa.Integer),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("updated_at", sa.TIMESTAMP()),
    sa.Column("heartbeat_at", sa.TIMESTAMP()),
    # The next eligible dataid: READY inputs in dataid order, an output's row by dataid.
    sa.Index("ix_mflow_partitions_ready", "status", "dataset", "dataid"),
)

# Recurring jobs (SPEC §5): the jobs, every slot's outcome, the leader's lease, the members.
jobs = sa.Table(
    "mflow_jobs",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("document", sa.Text, nullable=False),  # JSON, as given
    sa.Column("base_dir", sa.String(1000)),
    sa.Column("enabled", sa.Integer, nullable=False),  # 1 or 0 (Oracle has no boolean)
    sa.Column("created_at", sa.TIMESTAMP()),
    sa.Column("updated_at", sa.TIMESTAMP()),
)

fires = sa.Table(
    "mflow_fires",
    metadata,
    sa.Column("job", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(20), primary_key=True),  # scheduled, manual
    sa.Column("slot", sa.TIMESTAMP(), primary_key=True),  # the fire key: at most once
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("reason", sa.String(1000)),
    sa.Column("run_id", sa.Integer),
    sa.Column("host", sa.String(255)),
    sa.Column("epoch", sa.Integer),
    sa.Column("at", sa.TIMESTAMP()),
)

lease = sa.Table(
    "mflow_lease",
    metadata,
    sa.Column("name", sa.String(50), primary_key=True),  # "scheduler"
    sa.Column("holder", sa.String(255)),
    sa.Column("hostname", sa.String(255)),
    sa.Column("epoch", sa.Integer, nullable=False),
    sa.Column("since", sa.TIMESTAMP()),
    sa.Column("expires_at", sa.TIMESTAMP()),
)

members = sa.Table(
    "mflow_members",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("hostname", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("since", sa.TIMESTAMP()),
    sa.Column("heartbeat_at", sa.TIMESTAMP()),
)

SCHEMA_VERSION_KEY = "schema_version"
STORE_ID_KEY = "store_id"


# Columns added to a table after it first shipped: (table, column), added by ALTER TABLE to an
# older store's table on its first use by a newer mflow (create_all only creates tables).
ADDED_COLUMNS = ((runs, runs.c.note),)


def add_missing_columns(conn: Connection) -> None:
    """ALTER TABLE ... ADD the columns an older store's tables lack."""
    inspector = sa.inspect(conn)
    for table, column in ADDED_COLUMNS:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        if column.name not in present:
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD {column.name} {kind}")


def _dialect(name: str) -> Dialect:
    from sqlalchemy.dialects import oracle, postgresql, sqlite

    dialects = {"oracle": oracle, "postgresql": postgresql, "sqlite": sqlite}
    if name not in dialects:
        raise ValueError(f"unknown SQL dialect '{name}' (known: {', '.join(dialects)})")
    return dialects[name].dialect()


def ddl(dialect_name: str) -> str:
    """The CREATE TABLE / CREATE INDEX statements and the schema-version row, `;`-terminated.

    `dialect_name` is "oracle", "postgresql" or "sqlite"; anything else raises ValueError.
    """
    dialect = _dialect(dialect_name)
    statements: list[str] = []
    for table in metadata.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda ix: ix.name or ""):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    version_row = sa.insert(meta).values(name=SCHEMA_VERSION_KEY, value=str(SCHEMA_VERSION))
    statements.append(
        str(version_row.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    )
    # The store's id is made by the first mflow that uses it (SqlStore.store_id).
    if dialect_name == "oracle":
        statements.append("COMMIT")  # SQL*Plus does not commit an INSERT on its own
    return "".join(f"{_tidy(statement)};\n\n" for statement in statements)


def _tidy(statement: str) -> str:
    """SQLAlchemy's compiled DDL, without its tabs and trailing blanks."""
    return "\n".join(line.rstrip().replace("\t", "    ") for line in statement.splitlines())


# ---------------------------------------------------------------------- records <-> rows


def to_db_time(t: float | None) -> datetime | None:
    """Epoch seconds -> naive UTC datetime, rounded to the microsecond."""
    return None if t is None else EPOCH + timedelta(seconds=t)


def from_db_time(value: datetime | None) -> float | None:
    """Naive UTC datetime (as stored) -> epoch seconds."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return (value - EPOCH) / timedelta(seconds=1)


def stored_time(t: float) -> float:
    """`t` as the store will give it back (microsecond precision)."""
    return from_db_time(to_db_time(t))  # type: ignore[return-value]


def run_from_row(row: Row[Any]) -> RunRecord:
    # Oracle stores '' as NULL, so text columns come back as None there.
    return RunRecord(
        id=int(row.id),
        dag=row.dag,
        taskfile=row.taskfile or "",
        status=RunState(row.status),
        host=row.host or "",
        pid=int(row.pid or 0),
        started_at=from_db_time(row.started_at) or 0.0,
        ended_at=from_db_time(row.ended_at),
        heartbeat_at=from_db_time(row.heartbeat_at) or 0.0,
        log_directory=row.log_directory or "",
        parent_run_id=row.parent_run_id,
        parent_task_id=row.parent_task_id,
        note=row.note,
    )


def task_from_row(row: Row[Any]) -> TaskRecord:
    return TaskRecord(
        run_id=int(row.run_id),
        task_id=row.task_id,
        state=TaskState(row.state),
        attempt=int(row.attempt or 0),
        started_at=from_db_time(row.started_at),
        ended_at=from_db_time(row.ended_at),
        exit_code=row.exit_code,
        pid=row.pid,
        host=row.host,
        log_path=row.log_path,
        reason=row.reason,
    )


def task_values(change: TaskRecord) -> dict[str, Any]:
    reason = change.reason
    if reason is not None and len(reason) > REASON_LENGTH:
        reason = reason[: REASON_LENGTH - 3] + "..."
    return {
        "state": STATE_TEXT[change.state],
        "attempt": change.attempt,
        "started_at": to_db_time(change.started_at),
        "ended_at": to_db_time(change.ended_at),
        "exit_code": change.exit_code,
        "pid": change.pid,
        "host": change.host,
        "log_path": change.log_path,
        "reason": reason,
    }


# --------------------------------------------- the statements of record() and add_tasks()

# The keys of task_values(): every field of a TaskRecord but the two that find its row.
_TASK_VALUES = tuple(f.name for f in fields(TaskRecord) if f.name not in ("run_id", "task_id"))
# Bind parameters are named "b_<field>" (WHERE) and "v_<field>" (values): see DriverStatement.
UPDATE_TASK = (
    sa.update(task_runs)
    .where(task_runs.c.run_id == sa.bindparam("b_run_id"))
    .where(task_runs.c.task_id == sa.bindparam("b_task_id"))
    .values({name: sa.bindparam(f"v_{name}") for name in _TASK_VALUES})
)
ADD_TASK = sa.insert(task_runs).values(
    {name: sa.bindparam(f"v_{name}") for name in ("run_id", "task_id", "state", "attempt")}
)


class DriverStatement:
    """A statement compiled once for a dialect, sent with the driver's own executemany.

    For the store's bulk writes: `record` runs on the writer thread while the runner starts
    processes, and every microsecond of Python it spends holding the GIL delays the runner;
    `add_tasks` runs before a run's first task starts. Going around SQLAlchemy's
    per-execution machinery (the statement is compiled here once, with the dialect's own
    bind processors, e.g. SQLite's TIMESTAMP-to-text) makes them about three times cheaper.
    Errors still come back as SQLAlchemy's DBAPIError. Bind parameters are named `b_<field>`
    (WHERE) or `v_<field>` (values) and take `<field>` of each row given to `rows`.
    """

    def __init__(self, statement: UpdateBase, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql: str = compiled.string
        names = list(compiled.positiontup or compiled.binds)
        assert all(n[:2] in ("b_", "v_") for n in names), names  # see the class docstring
        self.positional = compiled.positional
        self.names = [compiled.escaped_bind_names.get(n, n) for n in names]
        self.fields = [n[2:] for n in names]  # b_run_id -> run_id, v_state -> state
        self.processors = [
            compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names
        ]

    def rows(self, values: Iterable[dict[str, Any]]) -> list[Any]:
        """The driver's parameters for `values` (dicts by field name), converted by the
        dialect: tuples for a positional paramstyle, dicts by bind name otherwise."""
        out = []
        for row in values:
            params = [
                row[f] if p is None else p(row[f])
                for f, p in zip(self.fields, self.processors, strict=True)
            ]
            if self.positional:
                out.append(tuple(params))
            else:
                out.append(dict(zip(self.names, params, strict=True)))
        return out
