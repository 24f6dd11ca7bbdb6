"""The state-store contract, operations side (SPEC §11), on every backend: the store's id, task
definitions, stop requests, runs whose owner is gone, the DAGs a store knows, pruning.
Fixtures as in test_state_contract.py: a fresh store per test on each backend."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from test_state_contract import dead_pid, new_run

from mflow.state.base import StateStore, TaskRecord
from mflow.states import RunState, TaskState


def test_the_store_id_is_made_once_and_seen_by_every_process(
    store: StateStore, open_at: Callable[[], StateStore]
) -> None:
    first = store.store_id()
    assert len(first) == 32
    assert open_at().store_id() == first
    assert store.store_id() == first


def test_definitions_are_kept_per_run_and_replaced_whole(store: StateStore) -> None:
    run = store.start_run(new_run(), lock=False)
    other = store.start_run(new_run(), lock=False)
    assert store.definitions(run.id) is None
    store.set_definitions(run.id, b"first \x00\xff")
    store.set_definitions(other.id, b"other")
    assert store.definitions(run.id) == b"first \x00\xff"
    store.set_definitions(run.id, b"second")
    assert store.definitions(run.id) == b"second"
    assert store.definitions(other.id) == b"other"


def test_definitions_of_a_big_dag_fit(store: StateStore) -> None:
    # More than one ZooKeeper node's megabyte.
    run = store.start_run(new_run(), lock=False)
    blob = os.urandom(2_500_000)
    store.set_definitions(run.id, blob)
    assert store.definitions(run.id) == blob


def test_removed_tasks_leave_the_run(store: StateStore) -> None:
    run = store.start_run(new_run(), lock=False)
    store.add_tasks(run.id, ["a", "b", "c"])
    store.record([TaskRecord(run.id, "b", TaskState.FAILED, 1)])
    store.remove_tasks(run.id, ["b", "never"])
    assert sorted(t.task_id for t in store.tasks(run.id)) == ["a", "c"]
    store.add_tasks(run.id, ["b"])  # and may come back
    assert {t.task_id: t.state for t in store.tasks(run.id)}["b"] is TaskState.NONE


def test_a_stop_request_is_seen_by_the_runs_owner(
    store: StateStore, open_at: Callable[[], StateStore]
) -> None:
    run = store.start_run(new_run())
    assert store.stop_requested(run.id) is None
    open_at().request_stop(run.id, "ops@elsewhere pid 7")
    assert store.stop_requested(run.id) == "ops@elsewhere pid 7"


def test_a_run_whose_owner_is_gone_is_marked_failed_and_unlocked(store: StateStore) -> None:
    run = store.start_run(new_run(pid=dead_pid()))
    assert store.mark_gone(run, time.time())
    marked = store.get_run(run.id)
    assert marked.status is RunState.FAILED and marked.ended_at is not None
    assert marked.note == "owner gone"
    assert not store.mark_gone(run, time.time())  # once
    store.start_run(new_run())  # the DAG's lock is free


def test_a_run_that_moved_since_it_was_read_is_not_marked(store: StateStore) -> None:
    run = store.start_run(new_run(pid=dead_pid()))
    store.heartbeat(run.id, time.time() + 5)  # its owner beat after we judged it gone
    assert not store.mark_gone(run, time.time())
    assert store.get_run(run.id).status is RunState.RUNNING


def test_dags_name_each_dag_with_its_run_count_and_latest_run(store: StateStore) -> None:
    assert store.dags() == []
    first = store.start_run(new_run("b"), lock=False)
    store.finish_run(first.id, RunState.SUCCESS, time.time())
    store.start_run(new_run("a"), lock=False)
    latest = store.start_run(new_run("b"), lock=False)
    found = {d.dag: (d.runs, d.last_run.id) for d in store.dags()}
    assert found == {"a": (1, latest.id - 1), "b": (2, latest.id)}
    assert [d.dag for d in store.dags()] == ["a", "b"]


def test_runs_ended_before_a_time_and_their_deletion(store: StateStore) -> None:
    old = store.start_run(new_run("etl"), lock=False)
    store.add_tasks(old.id, ["a"])
    store.set_definitions(old.id, b"defs")
    store.finish_run(old.id, RunState.SUCCESS, time.time() - 100)
    child = store.start_run(new_run("kid", parent_run_id=old.id, parent_task_id="a"), lock=False)
    store.finish_run(child.id, RunState.FAILED, time.time() - 90)
    recent = store.start_run(new_run("etl"), lock=False)
    store.finish_run(recent.id, RunState.SUCCESS, time.time())
    running = store.start_run(new_run("etl"), lock=False)
    cutoff = time.time() - 50
    assert [r.id for r in store.ended_before(cutoff)] == [old.id, child.id]
    assert [r.id for r in store.ended_before(cutoff, dag="kid")] == [child.id]
    store.delete_runs([old.id, child.id])
    assert [r.id for r in store.list_runs(limit=10)] == [running.id, recent.id]
    assert store.tasks(old.id) == [] and store.definitions(old.id) is None
    assert store.child_runs(old.id) == []
    assert {d.dag for d in store.dags()} == {"etl"}
    after = store.start_run(new_run("etl"), lock=False)
    assert after.id > running.id  # ids are never handed out twice


def test_a_version_1_sqlite_store_gains_the_new_tables_on_first_use(tmp_path: Path) -> None:
    import sqlite3

    from mflow.state import StoreLocation, open_store

    url = f"sqlite:///{tmp_path / 'state.db'}"
    old = open_store(StoreLocation(url))
    run = old.start_run(new_run(), lock=False)
    old.close()
    db = sqlite3.connect(tmp_path / "state.db")
    db.executescript(
        "DROP TABLE mflow_run_defs; DROP TABLE mflow_stops; DROP INDEX ix_mflow_runs_ended;"
        "ALTER TABLE mflow_runs DROP COLUMN note;"
        "UPDATE mflow_meta SET value = '1' WHERE name = 'schema_version';"
    )
    db.close()
    upgraded = open_store(StoreLocation(url))
    upgraded.set_definitions(run.id, b"defs")
    assert upgraded.definitions(run.id) == b"defs"
    assert upgraded.get_run(run.id).dag == "etl"
    assert upgraded.mark_gone(run, time.time())
    assert upgraded.get_run(run.id).note == "owner gone"
    upgraded.close()
    db = sqlite3.connect(tmp_path / "state.db")
    version = db.execute("SELECT value FROM mflow_meta WHERE name = 'schema_version'").fetchone()
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert version == ("2",) and "ix_mflow_runs_ended" in indexes


def test_runs_are_paged_by_id(store: StateStore) -> None:
    ids = [store.start_run(new_run(), lock=False).id for _ in range(5)]
    first = store.list_runs(limit=2)
    assert [r.id for r in first] == ids[:-3:-1]
    second = store.list_runs(limit=2, before=first[-1].id)
    assert [r.id for r in second] == [ids[2], ids[1]]
    assert [r.id for r in store.list_runs(limit=2, before=ids[0])] == []
