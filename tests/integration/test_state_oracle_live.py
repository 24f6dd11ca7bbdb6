"""The core of the state-store contract against a real Oracle database (12c or later).

Set `MFLOW_TEST_ORACLE_URL` to an SQLAlchemy URL of a throw-away schema, e.g.
`oracle+oracledb://mflow_test:secret@dbhost:1521/?service_name=FREEPDB1`. Skipped when it is
not set, in CI too (no Oracle there). The test refuses to touch a schema that already holds
mflow tables, and drops the ones it created afterwards.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from mflow.errors import RunAlreadyActive
from mflow.state import StoreLocation, open_store
from mflow.state.base import NewRun, TaskRecord, this_host
from mflow.state.ddl import metadata
from mflow.state.sql import SqlStore
from mflow.states import RunState, TaskState

pytestmark = pytest.mark.oracle

ORACLE_URL = os.environ.get("MFLOW_TEST_ORACLE_URL", "")


@pytest.fixture
def oracle_store() -> Iterator[SqlStore]:
    if not ORACLE_URL:
        pytest.skip("MFLOW_TEST_ORACLE_URL is not set")
    engine = sa.create_engine(ORACLE_URL)
    try:
        existing = set(sa.inspect(engine).get_table_names()) & set(metadata.tables)
    finally:
        engine.dispose()
    if existing:
        pytest.skip(
            f"the Oracle schema already has mflow tables {sorted(existing)}; use an empty one"
        )
    store = open_store(StoreLocation(ORACLE_URL))
    assert isinstance(store, SqlStore)
    try:
        yield store
    finally:
        metadata.drop_all(store.engine)
        store.close()


def new_run(**fields: object) -> NewRun:
    values: dict[str, object] = {
        "dag": "oracle-live",
        "taskfile": "",  # Oracle stores '' as NULL: must come back as ''
        "host": this_host(),
        "pid": os.getpid(),
        "started_at": time.time(),
    }
    values.update(fields)
    return NewRun(**values)  # type: ignore[arg-type]


def test_oracle_store_core_contract(oracle_store: SqlStore) -> None:
    store = oracle_store
    store.init()
    store.init()  # idempotent

    started = time.time()
    run = store.start_run(new_run(started_at=started))
    assert store.get_run(run.id) == run
    assert run.taskfile == "" and abs(run.started_at - started) < 1e-6

    with pytest.raises(RunAlreadyActive) as caught:
        store.start_run(new_run())
    assert caught.value.run_id == run.id

    store.add_tasks(run.id, [f"t{n}" for n in range(2000)])
    store.record(
        [
            TaskRecord(run.id, "t0", TaskState.RUNNING, 1, started),
            TaskRecord(run.id, "t1", TaskState.FAILED, 2, started, started + 1.5, 3, 42, "h",
                       "/logs/t1.log", "x" * 5000),
            TaskRecord(run.id, "t0", TaskState.SUCCESS, 1, started, started + 2, 0),
            TaskRecord(run.id, "extra", TaskState.SUCCESS, 1, started),
        ]
    )  # fmt: skip
    rows = {t.task_id: t for t in store.tasks(run.id)}
    assert len(rows) == 2001
    assert (rows["t0"].state, rows["t0"].exit_code) == (TaskState.SUCCESS, 0)
    assert (rows["t1"].attempt, rows["t1"].pid, rows["t1"].log_path) == (2, 42, "/logs/t1.log")
    assert rows["t1"].reason is not None and len(rows["t1"].reason) <= 1000
    assert rows["extra"].state is TaskState.SUCCESS
    assert rows["t2"].state is TaskState.NONE

    store.finish_run(run.id, RunState.SUCCESS, started + 3)
    assert store.get_run(run.id).status is RunState.SUCCESS
    second = store.start_run(new_run())
    assert second.id > run.id
    assert [r.id for r in store.list_runs(dag="oracle-live", limit=1)] == [second.id]


def test_oracle_stale_holder_is_released(oracle_store: SqlStore) -> None:
    process = subprocess.Popen(["true"])
    process.wait()
    gone = oracle_store.start_run(new_run(pid=process.pid))
    run = oracle_store.start_run(new_run())
    assert oracle_store.get_run(gone.id).status is RunState.FAILED
    assert oracle_store.get_run(run.id).status is RunState.RUNNING
