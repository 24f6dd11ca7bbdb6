"""`mflow logs --follow` (mflow.queries.follow_log) against a scripted store: the moments a real
run makes too rare to hit on purpose. tests/cli/test_queries.py follows real runs."""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

from mflow.queries import follow_log
from mflow.state.base import STALE_AFTER, RunRecord, StateStore, TaskRecord, this_host
from mflow.states import RunState, TaskState


def drain(chunks: Iterator[str], out: io.StringIO) -> RunRecord:
    """Write what the follow yields; return its value (the run as last seen)."""
    while True:
        try:
            out.write(next(chunks))
        except StopIteration as stop:
            return stop.value


class ScriptedStore:
    """Answers `tasks()` from a script: each call runs the next step, which may also write to
    the log (what the task did meanwhile), and returns the task's state at that moment."""

    def __init__(
        self, log: Path, steps: list[Callable[[], TaskState]], heartbeat_age: float = 0.0
    ) -> None:
        self.log = log
        self.steps = steps
        self.calls = 0
        self.heartbeat_age = heartbeat_age

    def tasks(self, run_id: int) -> list[TaskRecord]:
        state = self.steps[min(self.calls, len(self.steps) - 1)]()
        self.calls += 1
        return [TaskRecord(run_id, "t", state, 1, 1.0, None, None, None, None, str(self.log))]

    def mark_gone(self, run: RunRecord, at: float) -> bool:
        return False  # as if another process had resumed it meanwhile

    def get_run(self, run_id: int) -> RunRecord:
        # A live run: this process on this host, with a fresh heartbeat (see is_stale).
        now = time.time()
        beat = now - self.heartbeat_age
        return RunRecord(
            run_id, "dag", "dag.json", RunState.RUNNING, this_host(), os.getpid(), now, None, beat
        )


def test_lines_written_just_before_the_task_ends_are_printed(tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    log.write_text("first\n")

    def still_running() -> TaskState:
        return TaskState.RUNNING

    def writes_last_line_and_ends() -> TaskState:
        # Between follow_log's read of the file and its look at the store, the task wrote its
        # last line and ended: that line must still be printed.
        with log.open("a") as f:
            f.write("last\n")
        return TaskState.SUCCESS

    store = ScriptedStore(log, [still_running, writes_last_line_and_ends])
    out = io.StringIO()
    task = TaskRecord(1, "t", TaskState.RUNNING, 1, 1.0, log_path=str(log))
    drain(follow_log(cast(StateStore, store), 1, task, poll=0), out)
    assert out.getvalue() == "first\nlast\n"


def test_a_run_whose_mflow_is_gone_ends_the_follow(tmp_path: Path) -> None:
    # No heartbeat for longer than STALE_AFTER: the run's mflow is gone (killed, host down),
    # though the store still says RUNNING and the task never ends. Stop after the file's end.
    log = tmp_path / "t.log"
    log.write_text("only\n")
    store = ScriptedStore(log, [lambda: TaskState.RUNNING], heartbeat_age=STALE_AFTER + 1)
    out = io.StringIO()
    task = TaskRecord(1, "t", TaskState.RUNNING, 1, 1.0, log_path=str(log))
    seen: list[RunRecord] = []
    follower = threading.Thread(
        target=lambda: seen.append(
            drain(follow_log(cast(StateStore, store), 1, task, poll=0.01), out)
        ),
        daemon=True,
    )
    follower.start()
    follower.join(timeout=10)
    assert not follower.is_alive(), "follow_log kept waiting for a run whose mflow is gone"
    assert out.getvalue() == "only\n"
    assert seen[0].status is RunState.RUNNING
