"""The state-store contract: one suite, run against every backend (SQLite, PostgreSQL, ZooKeeper).

Each test gets its own store (a SQLite file in tmp_path, a PostgreSQL schema, a ZooKeeper
chroot). Backend-specific behaviour (SQLite pragmas, stored time columns, ZooKeeper sessions,
messages of unreachable stores) follows the contract tests at the end of the file.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from mflow.errors import BackendUnavailable, RunAlreadyActive, RunNotFound
from mflow.state import StoreLocation, open_store
from mflow.state.base import STALE_AFTER, NewRun, StateStore, TaskRecord, this_host
from mflow.states import RunState, TaskState

OTHER_HOST = "elsewhere.example"  # never this machine, so only the heartbeat can make it stale
NOW = time.time()


def new_run(dag: str = "etl", **fields: object) -> NewRun:
    values: dict[str, object] = {
        "dag": dag,
        "taskfile": "/srv/etl/tasks.json",
        "host": this_host(),
        "pid": os.getpid(),
        "started_at": time.time(),
        "log_directory": "/srv/etl/logs",
    }
    values.update(fields)
    return NewRun(**values)  # type: ignore[arg-type]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def close_to(a: float | None, b: float | None) -> bool:
    """Equal to the microsecond (the SQL store keeps microseconds)."""
    return a is not None and b is not None and abs(a - b) < 1e-6


# ---------------------------------------------------------------------- schema and runs


def test_init_twice_is_harmless(store: StateStore) -> None:
    run = store.start_run(new_run())
    store.init()
    store.init()
    assert store.get_run(run.id) == run


def test_store_never_initialised_creates_what_it_needs(
    open_at: Callable[[], StateStore],
) -> None:
    store = open_at()
    assert store.list_runs() == []
    run = store.start_run(new_run())
    assert open_at().get_run(run.id) == run


def test_run_ids_are_integers_that_increase(store: StateStore) -> None:
    ids = [store.start_run(new_run(f"dag{n}")).id for n in range(4)]
    assert all(isinstance(run_id, int) for run_id in ids)
    assert ids == sorted(set(ids))
    assert ids[0] >= 1


def test_start_run_round_trips_every_field(store: StateStore) -> None:
    parent = store.start_run(new_run("parent"))
    started = 1_767_225_600.123456  # 2026-01-01, with microseconds
    run = store.start_run(
        new_run(
            "team/child dag",
            taskfile="/srv/child/tasks.yaml",
            started_at=started,
            log_directory="/srv/logs/run 1",
            parent_run_id=parent.id,
            parent_task_id="load.customers-v2",
        )
    )
    got = store.get_run(run.id)
    assert got == run
    assert got.dag == "team/child dag"
    assert got.taskfile == "/srv/child/tasks.yaml"
    assert got.status is RunState.RUNNING
    assert (got.host, got.pid) == (this_host(), os.getpid())
    assert close_to(got.started_at, started)
    assert close_to(got.heartbeat_at, started)
    assert got.ended_at is None
    assert got.log_directory == "/srv/logs/run 1"
    assert (got.parent_run_id, got.parent_task_id) == (parent.id, "load.customers-v2")


def test_times_round_trip_to_the_microsecond(store: StateStore) -> None:
    started = time.time()
    run = store.start_run(new_run(started_at=started))
    store.heartbeat(run.id, started + 1.000001)
    store.finish_run(run.id, RunState.SUCCESS, started + 2.999999)
    got = store.get_run(run.id)
    assert close_to(got.started_at, started)
    assert close_to(got.heartbeat_at, started + 1.000001)
    assert close_to(got.ended_at, started + 2.999999)


def test_get_run_of_unknown_id_raises_run_not_found(store: StateStore) -> None:
    with pytest.raises(RunNotFound, match="run 4242"):
        store.get_run(4242)


# ---------------------------------------------------------------------- the run lock


def test_second_start_of_a_dag_names_the_active_run(store: StateStore) -> None:
    first = store.start_run(new_run("etl"))
    with pytest.raises(RunAlreadyActive) as caught:
        store.start_run(new_run("etl", pid=os.getppid()))
    error = caught.value
    assert (error.dag, error.run_id, error.host, error.pid) == (
        "etl",
        first.id,
        this_host(),
        os.getpid(),
    )
    assert [r.id for r in store.list_runs(dag="etl")] == [first.id]  # no orphan run left


def test_lock_conflict_is_seen_by_another_store_instance(
    store: StateStore, open_at: Callable[[], StateStore]
) -> None:
    first = store.start_run(new_run("etl"))
    with pytest.raises(RunAlreadyActive) as caught:
        open_at().start_run(new_run("etl"))
    assert caught.value.run_id == first.id


def test_different_dags_do_not_conflict(store: StateStore) -> None:
    a = store.start_run(new_run("a"))
    b = store.start_run(new_run("b"))
    assert a.id != b.id
    assert {r.status for r in (store.get_run(a.id), store.get_run(b.id))} == {RunState.RUNNING}


def test_start_without_lock_ignores_and_does_not_take_the_lock(store: StateStore) -> None:
    held = store.start_run(new_run("etl"))
    concurrent = store.start_run(new_run("etl"), lock=False)
    assert concurrent.id > held.id
    store.finish_run(held.id, RunState.SUCCESS, time.time())
    # The lock-free run never held the lock, so a locked start succeeds while it runs.
    assert store.start_run(new_run("etl")).id > concurrent.id


def test_finish_run_sets_status_and_releases_the_lock(store: StateStore) -> None:
    first = store.start_run(new_run("etl"))
    store.finish_run(first.id, RunState.FAILED, first.started_at + 5)
    got = store.get_run(first.id)
    assert got.status is RunState.FAILED
    assert close_to(got.ended_at, first.started_at + 5)
    second = store.start_run(new_run("etl"))
    assert second.id > first.id
    assert store.get_run(second.id).status is RunState.RUNNING


def test_finish_of_a_lock_free_run_keeps_the_holders_lock(store: StateStore) -> None:
    held = store.start_run(new_run("etl"))
    free = store.start_run(new_run("etl"), lock=False)
    store.finish_run(free.id, RunState.SUCCESS, time.time())
    with pytest.raises(RunAlreadyActive) as caught:
        store.start_run(new_run("etl"))
    assert caught.value.run_id == held.id


def test_holder_with_dead_pid_on_this_host_is_failed_and_released(store: StateStore) -> None:
    gone = store.start_run(new_run("etl", pid=dead_pid()))
    before = time.time()
    run = store.start_run(new_run("etl"))
    assert run.id > gone.id
    failed = store.get_run(gone.id)
    assert failed.status is RunState.FAILED
    assert failed.ended_at is not None and failed.ended_at >= before - 1e-6


def test_holder_on_another_host_started_long_ago_is_released(store: StateStore) -> None:
    old = time.time() - STALE_AFTER - 60
    gone = store.start_run(new_run("etl", host=OTHER_HOST, pid=1, started_at=old))
    run = store.start_run(new_run("etl"))
    assert store.get_run(gone.id).status is RunState.FAILED
    assert store.get_run(run.id).status is RunState.RUNNING


def test_holder_whose_last_heartbeat_is_old_is_released(store: StateStore) -> None:
    gone = store.start_run(new_run("etl", host=OTHER_HOST, pid=1))
    store.heartbeat(gone.id, time.time() - STALE_AFTER - 1)
    store.start_run(new_run("etl"))
    assert store.get_run(gone.id).status is RunState.FAILED


def test_live_holder_on_another_host_blocks(store: StateStore) -> None:
    live = store.start_run(new_run("etl", host=OTHER_HOST, pid=1))
    store.heartbeat(live.id, time.time())
    with pytest.raises(RunAlreadyActive) as caught:
        store.start_run(new_run("etl"))
    assert (caught.value.run_id, caught.value.host, caught.value.pid) == (live.id, OTHER_HOST, 1)
    assert store.get_run(live.id).status is RunState.RUNNING


# ---------------------------------------------------------------------- resume


def test_resume_of_a_failed_run_makes_it_running_and_keeps_its_tasks(store: StateStore) -> None:
    run = store.start_run(new_run("etl", pid=dead_pid()))
    store.add_tasks(run.id, ["extract", "load"])
    store.record([TaskRecord(run.id, "extract", TaskState.SUCCESS, 1, NOW, NOW + 1, 0)])
    store.finish_run(run.id, RunState.FAILED, NOW + 2)

    resumed = store.resume_run(run.id, host=this_host(), pid=os.getpid())

    assert resumed.id == run.id
    assert resumed.status is RunState.RUNNING
    assert (resumed.host, resumed.pid, resumed.ended_at) == (this_host(), os.getpid(), None)
    assert store.get_run(run.id) == resumed
    assert resumed.heartbeat_at > NOW
    states = {t.task_id: (t.state, t.attempt) for t in store.tasks(run.id)}
    assert states == {"extract": (TaskState.SUCCESS, 1), "load": (TaskState.NONE, 0)}
    # It holds the lock again.
    with pytest.raises(RunAlreadyActive) as caught:
        store.start_run(new_run("etl"))
    assert caught.value.run_id == run.id


def test_resume_of_a_live_running_run_raises(store: StateStore) -> None:
    run = store.start_run(new_run("etl"))
    with pytest.raises(RunAlreadyActive) as caught:
        store.resume_run(run.id, host=this_host(), pid=os.getpid())
    assert caught.value.run_id == run.id
    assert store.get_run(run.id) == run


def test_resume_of_a_running_run_whose_owner_died_takes_it_over(store: StateStore) -> None:
    run = store.start_run(new_run("etl", pid=dead_pid()))
    resumed = store.resume_run(run.id, host=this_host(), pid=os.getpid())
    assert (resumed.status, resumed.pid) == (RunState.RUNNING, os.getpid())
    with pytest.raises(RunAlreadyActive) as caught:
        store.start_run(new_run("etl"))
    assert caught.value.run_id == run.id


def test_resume_while_another_run_of_the_dag_is_live_names_that_run(store: StateStore) -> None:
    old = store.start_run(new_run("etl"))
    store.finish_run(old.id, RunState.FAILED, time.time())
    live = store.start_run(new_run("etl"))
    with pytest.raises(RunAlreadyActive) as caught:
        store.resume_run(old.id, host=this_host(), pid=os.getpid())
    assert caught.value.run_id == live.id
    assert store.get_run(old.id).status is RunState.FAILED


def test_resume_releases_a_stale_holder_of_the_dag(store: StateStore) -> None:
    old = store.start_run(new_run("etl"))
    store.finish_run(old.id, RunState.FAILED, time.time())
    gone = store.start_run(new_run("etl", pid=dead_pid()))
    store.resume_run(old.id, host=this_host(), pid=os.getpid())
    assert store.get_run(gone.id).status is RunState.FAILED
    assert store.get_run(old.id).status is RunState.RUNNING


def test_resume_without_lock_leaves_the_lock_alone(store: StateStore) -> None:
    old = store.start_run(new_run("etl"))
    store.finish_run(old.id, RunState.FAILED, time.time())
    live = store.start_run(new_run("etl"))
    resumed = store.resume_run(old.id, host=this_host(), pid=os.getpid(), lock=False)
    assert resumed.status is RunState.RUNNING
    with pytest.raises(RunAlreadyActive) as caught:
        store.start_run(new_run("etl"))
    assert caught.value.run_id == live.id


def test_resume_of_an_unknown_run_raises_run_not_found(store: StateStore) -> None:
    with pytest.raises(RunNotFound):
        store.resume_run(999, host=this_host(), pid=os.getpid())


# ---------------------------------------------------------------------- task rows


def test_add_tasks_creates_rows_in_state_none(store: StateStore) -> None:
    run = store.start_run(new_run())
    store.add_tasks(run.id, ["extract", "transform.v2", "load-all"])
    rows = {t.task_id: t for t in store.tasks(run.id)}
    assert set(rows) == {"extract", "transform.v2", "load-all"}
    for task_id, row in rows.items():
        assert row == TaskRecord(run.id, task_id)  # NONE, attempt 0, nothing else set


def test_add_tasks_keeps_rows_that_exist(store: StateStore) -> None:
    run = store.start_run(new_run())
    store.add_tasks(run.id, ["a", "b"])
    store.record([TaskRecord(run.id, "a", TaskState.SUCCESS, 2, NOW, NOW + 1, 0)])
    store.add_tasks(run.id, ["a", "b", "c", "c"])
    states = {t.task_id: t.state for t in store.tasks(run.id)}
    assert states == {"a": TaskState.SUCCESS, "b": TaskState.NONE, "c": TaskState.NONE}


def test_tasks_of_a_run_without_tasks_is_empty(store: StateStore) -> None:
    assert store.tasks(store.start_run(new_run()).id) == []


def test_record_writes_every_field(store: StateStore) -> None:
    run = store.start_run(new_run())
    store.add_tasks(run.id, ["load"])
    change = TaskRecord(
        run_id=run.id,
        task_id="load",
        state=TaskState.FAILED,
        attempt=3,
        started_at=NOW + 0.000001,
        ended_at=NOW + 61.5,
        exit_code=7,
        pid=4321,
        host="worker-1",
        log_path="/srv/logs/master_1_task_load.log",
        reason="exit code 7 (timed out after 60 s)",
    )
    store.record([change])
    (got,) = store.tasks(run.id)
    assert close_to(got.started_at, change.started_at)
    assert close_to(got.ended_at, change.ended_at)
    assert got == replace(change, started_at=got.started_at, ended_at=got.ended_at)


def test_record_can_clear_fields(store: StateStore) -> None:
    run = store.start_run(new_run())
    store.record([TaskRecord(run.id, "t", TaskState.FAILED, 1, NOW, NOW + 1, 1, 9, "h", "l", "r")])
    store.record([TaskRecord(run.id, "t", TaskState.RUNNING, 2, NOW + 2)])
    (got,) = store.tasks(run.id)
    assert (got.state, got.attempt, got.ended_at, got.exit_code, got.reason) == (
        TaskState.RUNNING,
        2,
        None,
        None,
        None,
    )


def test_record_applies_changes_in_order_so_the_last_one_wins(store: StateStore) -> None:
    run = store.start_run(new_run())
    store.add_tasks(run.id, ["a", "b"])
    store.record(
        [
            TaskRecord(run.id, "a", TaskState.RUNNING, 1, NOW, pid=11),
            TaskRecord(run.id, "b", TaskState.RUNNING, 1, NOW, pid=12),
            TaskRecord(run.id, "a", TaskState.SUCCESS, 1, NOW, NOW + 1, 0, 11),
        ]
    )
    states = {t.task_id: (t.state, t.exit_code) for t in store.tasks(run.id)}
    assert states == {"a": (TaskState.SUCCESS, 0), "b": (TaskState.RUNNING, None)}


def test_record_creates_rows_that_add_tasks_did_not(store: StateStore) -> None:
    run = store.start_run(new_run())
    store.add_tasks(run.id, ["known"])
    store.record(
        [
            TaskRecord(run.id, "known", TaskState.RUNNING, 1, NOW),
            TaskRecord(run.id, "surprise", TaskState.SUCCESS, 1, NOW, NOW + 1, 0),
        ]
    )
    states = {t.task_id: t.state for t in store.tasks(run.id)}
    assert states == {"known": TaskState.RUNNING, "surprise": TaskState.SUCCESS}


def test_record_sees_rows_added_by_another_store_instance(
    store: StateStore, open_at: Callable[[], StateStore]
) -> None:
    run = store.start_run(new_run())
    store.record([TaskRecord(run.id, "a", TaskState.RUNNING, 1, NOW)])  # store: "a" exists
    other = open_at()
    other.add_tasks(run.id, ["b"])
    other.record([TaskRecord(run.id, "a", TaskState.SUCCESS, 1, NOW, NOW + 1, 0)])
    store.record([TaskRecord(run.id, "b", TaskState.FAILED, 1, NOW, NOW + 1, 1)])
    states = {t.task_id: t.state for t in store.tasks(run.id)}
    assert states == {"a": TaskState.SUCCESS, "b": TaskState.FAILED}


def test_record_of_many_runs_and_tasks_in_one_batch(store: StateStore) -> None:
    a = store.start_run(new_run("a"))
    b = store.start_run(new_run("b"))
    ids = [f"t{n:04d}" for n in range(300)]
    store.add_tasks(a.id, ids)
    store.add_tasks(b.id, ids)
    store.record([TaskRecord(r.id, t, TaskState.SUCCESS, 1, NOW) for r in (a, b) for t in ids])
    assert {t.state for t in store.tasks(a.id) + store.tasks(b.id)} == {TaskState.SUCCESS}
    assert len(store.tasks(a.id)) == len(store.tasks(b.id)) == 300


def test_record_truncates_a_long_reason(store: StateStore) -> None:
    run = store.start_run(new_run())
    store.record([TaskRecord(run.id, "t", TaskState.FAILED, 1, reason="é" * 5000)])
    (got,) = store.tasks(run.id)
    assert got.reason is not None
    assert 100 <= len(got.reason) <= 1000
    assert got.reason.startswith("éé")


# ---------------------------------------------------------------------- queries


def test_list_runs_is_most_recent_first_and_filters(store: StateStore) -> None:
    etl1 = store.start_run(new_run("etl"))
    store.finish_run(etl1.id, RunState.SUCCESS, time.time())
    other = store.start_run(new_run("other"))
    etl2 = store.start_run(new_run("etl"))
    store.finish_run(etl2.id, RunState.FAILED, time.time())
    etl3 = store.start_run(new_run("etl"))

    assert [r.id for r in store.list_runs()] == [etl3.id, etl2.id, other.id, etl1.id]
    assert [r.id for r in store.list_runs(dag="etl")] == [etl3.id, etl2.id, etl1.id]
    assert [r.id for r in store.list_runs(dag="etl", limit=2)] == [etl3.id, etl2.id]
    assert [r.id for r in store.list_runs(status=RunState.RUNNING)] == [etl3.id, other.id]
    assert [r.id for r in store.list_runs(dag="etl", status=RunState.SUCCESS)] == [etl1.id]
    assert store.list_runs(dag="nope") == []
    assert store.list_runs(limit=1)[0] == store.get_run(etl3.id)


def test_latest_run(store: StateStore) -> None:
    assert store.latest_run() is None
    first = store.start_run(new_run("etl"))
    second = store.start_run(new_run("other"))
    assert store.latest_run() == second
    assert store.latest_run("etl") == first
    assert store.latest_run("nope") is None


def test_child_runs_are_oldest_first(store: StateStore) -> None:
    parent = store.start_run(new_run("parent"))
    unrelated = store.start_run(new_run("solo"))
    one = store.start_run(new_run("child", parent_run_id=parent.id, parent_task_id="a"))
    store.finish_run(one.id, RunState.SUCCESS, time.time())
    two = store.start_run(new_run("child", parent_run_id=parent.id, parent_task_id="b"))
    assert [r.id for r in store.child_runs(parent.id)] == [one.id, two.id]
    assert store.child_runs(parent.id)[0] == store.get_run(one.id)
    assert store.child_runs(unrelated.id) == []


def test_heartbeat_moves_only_the_heartbeat(store: StateStore) -> None:
    run = store.start_run(new_run(started_at=NOW))
    store.heartbeat(run.id, NOW + 30)
    got = store.get_run(run.id)
    assert close_to(got.heartbeat_at, NOW + 30)
    assert got.status is RunState.RUNNING and close_to(got.started_at, NOW)


# ---------------------------------------------------------------------- SQL backends


sql_only = pytest.mark.parametrize(
    "store_url",
    ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)


@sql_only
def test_sql_times_are_stored_as_naive_utc(store: StateStore) -> None:
    started = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z
    run = store.start_run(new_run(started_at=started))
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        stored = conn.execute(
            sa.text("SELECT started_at FROM mflow_runs WHERE id = :id"), {"id": run.id}
        ).scalar_one()
    if isinstance(stored, str):  # SQLite keeps text
        stored = datetime.fromisoformat(stored)
    assert stored == datetime(2026, 1, 1, 0, 0, 0, 250000)
    assert stored.tzinfo is None


@sql_only
def test_schema_made_from_the_printed_ddl_is_accepted(
    store_url: str, open_at: Callable[[], StateStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mflow.state.ddl import ddl
    from mflow.state.sql import SqlStore

    engine = sa.create_engine(store_url)
    if engine.dialect.name == "sqlite":
        Path(engine.url.database or "").parent.mkdir(parents=True, exist_ok=True)
    with engine.begin() as conn:  # what a DBA does with `mflow db init --sql`
        for statement in ddl(engine.dialect.name).split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
    engine.dispose()

    def no_create(self: SqlStore) -> None:
        raise AssertionError("the store tried to create tables a DBA already created")

    monkeypatch.setattr(SqlStore, "init", no_create)
    store = open_at()
    run = store.start_run(new_run())
    store.add_tasks(run.id, ["a"])
    store.record([TaskRecord(run.id, "a", TaskState.SUCCESS, 1, NOW, NOW + 1, 0)])
    assert run.id == 1
    assert [(t.task_id, t.state) for t in store.tasks(run.id)] == [("a", TaskState.SUCCESS)]


def test_sqlite_store_creates_its_directory_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    store = open_store(StoreLocation(f"sqlite:///{path}"))
    try:
        store.start_run(new_run())
        with store.engine.connect() as conn:  # type: ignore[attr-defined]
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000
    finally:
        store.close()
    assert path.is_file()


def test_sqlite_add_tasks_of_ten_thousand_takes_well_under_a_second(tmp_path: Path) -> None:
    store = open_store(StoreLocation(f"sqlite:///{tmp_path / 'state.db'}"))
    try:
        run = store.start_run(new_run())
        ids = [f"task_{n:05d}" for n in range(10_000)]
        began = time.perf_counter()
        store.add_tasks(run.id, ids)
        elapsed = time.perf_counter() - began
        assert len(store.tasks(run.id)) == 10_000
    finally:
        store.close()
    assert elapsed < 1.0, f"add_tasks of 10,000 ids took {elapsed:.2f} s"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://mflow:Sup3r-Secret-pw@127.0.0.1:1/mflow",
        "oracle+oracledb://mflow:Sup3r-Secret-pw@127.0.0.1:1/?service_name=FREEPDB1",
        "sqlite:////proc/mflow-cannot-create-this/state.db",
    ],
    ids=["postgres", "oracle", "sqlite"],
)
def test_unreachable_sql_store_is_backend_unavailable_without_password(url: str) -> None:
    with pytest.raises(BackendUnavailable) as caught:
        store = open_store(StoreLocation(url))  # SQLite fails here: no directory
        try:
            store.start_run(new_run())
        finally:
            store.close()
    message = str(caught.value)
    assert "cannot be reached" in message
    assert "Sup3r-Secret-pw" not in message
    assert "Sup3r-Secret-pw" not in repr(caught.value)


def test_seed_oracle_datasource_store_hides_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from mflow.config import Datasource

    monkeypatch.setenv("MFLOW_TEST_ORA_PW", "Sup3r-Secret-pw")
    seed_form = Datasource(
        name="mflow",
        kind="oracle",
        fields={
            "name": "mflow",
            "connection_string": "127.0.0.1:1/FREEPDB1",
            "user": "mflow",
            "password": "${MFLOW_TEST_ORA_PW}",
        },
    )
    with pytest.raises(BackendUnavailable) as caught:
        store = open_store(StoreLocation("oracle+oracledb://", seed_form))
        try:
            store.list_runs()
        finally:
            store.close()
    assert "oracle+oracledb://mflow:***@127.0.0.1:1/FREEPDB1 cannot be reached" in str(caught.value)
    assert "Sup3r-Secret-pw" not in str(caught.value)


# ---------------------------------------------------------------------- ZooKeeper


zk_only = pytest.mark.parametrize(
    "store_url", [pytest.param("zookeeper", marks=pytest.mark.zookeeper)], indirect=True
)


@zk_only
def test_run_whose_session_ended_is_failed_by_the_next_start(
    open_at: Callable[[], StateStore],
) -> None:
    owner = open_at()
    orphan = owner.start_run(new_run("etl", host=OTHER_HOST, pid=1))
    owner.close()  # the process died: its session and its ephemeral lock are gone
    store = open_at()
    run = store.start_run(new_run("etl"))
    assert store.get_run(orphan.id).status is RunState.FAILED
    assert store.get_run(run.id).status is RunState.RUNNING


@zk_only
def test_running_run_whose_session_ended_can_be_resumed(
    open_at: Callable[[], StateStore],
) -> None:
    owner = open_at()
    orphan = owner.start_run(new_run("etl", host=OTHER_HOST, pid=1))
    owner.close()
    store = open_at()
    resumed = store.resume_run(orphan.id, host=this_host(), pid=os.getpid())
    assert (resumed.status, resumed.host) == (RunState.RUNNING, this_host())
    with pytest.raises(RunAlreadyActive):
        open_at().start_run(new_run("etl"))


@zk_only
def test_lock_is_taken_again_after_the_session_expires(
    store: StateStore, open_at: Callable[[], StateStore]
) -> None:
    from kazoo.client import KazooClient

    run = store.start_run(new_run("etl"))
    client = store.client  # type: ignore[attr-defined]
    lock_path = f"{store.root}/locks/etl"  # type: ignore[attr-defined]
    old_session, password = client.client_id
    # Kazoo's own test recipe: a second client on the same session closes it, expiring it.
    thief = KazooClient(hosts=store.hosts, client_id=(old_session, password))  # type: ignore[attr-defined]
    thief.start(timeout=10)
    thief.stop()
    thief.close()

    owner = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and owner in (None, old_session):
        time.sleep(0.1)
        try:
            stat = client.exists(lock_path)
        except Exception:  # still reconnecting
            continue
        owner = stat.ephemeralOwner if stat else None
    assert owner not in (None, old_session), "the lock was not re-created in a new session"
    with pytest.raises(RunAlreadyActive) as caught:
        open_at().start_run(new_run("etl", pid=os.getppid()))
    assert caught.value.run_id == run.id


def test_unreachable_zookeeper_names_the_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    from mflow.state.zookeeper import ZooKeeperStore

    monkeypatch.setattr(ZooKeeperStore, "connect_timeout", 1.0)
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1\b.*cannot be reached|"
                       r"cannot be reached.*127\.0\.0\.1:1\b"):  # fmt: skip
        open_store(StoreLocation("zk://127.0.0.1:1/mflow"))
