"""The store writer: transitions queued by the runner reach the store in order, grouped into
few commits, and closing the writer writes what is queued without waiting out the interval
between commits (the end of every run waits for it)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mflow.events import RunEnded, TaskEnded, TaskStarted
from mflow.state import StoreLocation, open_store
from mflow.state import writer as writer_module
from mflow.state.base import NewRun, this_host
from mflow.state.writer import StoreWriter
from mflow.states import RunState, TaskState


def test_close_writes_everything_queued_without_waiting_for_the_next_group_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An interval no test would sit out: close() must not wait for it.
    monkeypatch.setattr(writer_module, "GROUP_COMMIT_INTERVAL", 60.0)
    store = open_store(StoreLocation(f"sqlite:///{tmp_path / 'state.db'}"))
    started = time.time()
    run = store.start_run(
        NewRun(dag="d", taskfile="t.json", host=this_host(), pid=1, started_at=started,
               log_directory=str(tmp_path))
    )  # fmt: skip
    store.add_tasks(run.id, ["a", "b"])
    writer = StoreWriter(store, run.id)
    log = str(tmp_path / "a.log")
    # The first change is committed at once; what comes after it waits for the next group
    # commit, 60 s later.
    writer.handle(TaskStarted(run.id, "a", 1, 4242, log, "true", started))
    deadline = time.monotonic() + 30
    while store.tasks(run.id)[0].state is not TaskState.RUNNING:
        assert time.monotonic() < deadline, "the first change was not committed"
        time.sleep(0.01)
    writer.handle(TaskEnded(run.id, "a", 1, TaskState.SUCCESS, 0, None, started, started + 1, log))
    writer.handle(TaskStarted(run.id, "b", 1, 4243, log, "true", started + 1))
    writer.handle(TaskEnded(run.id, "b", 1, TaskState.SUCCESS, 0, None, started, started + 2, log))
    writer.handle(RunEnded(run.id, RunState.SUCCESS, {"SUCCESS": 2}, started, started + 2, 0))

    begun = time.monotonic()
    writer.close()
    assert time.monotonic() - begun < 30, "close() waited out the group-commit interval"
    assert writer.error is None
    assert {t.task_id: t.state for t in store.tasks(run.id)} == {
        "a": TaskState.SUCCESS,
        "b": TaskState.SUCCESS,
    }
    assert store.get_run(run.id).status is RunState.SUCCESS
    store.close()
