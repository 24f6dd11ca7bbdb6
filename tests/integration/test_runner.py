"""The run engine with real processes: ready-set dispatch, concurrency, failures, retries,
timeouts, logs and the environment of a task. The runner is driven directly (no store)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import TRACE, Recorder, alive, bash, intervals, max_overlap

from mflow.events import Listeners
from mflow.project import load_project
from mflow.runner import Plan, Runner, Settings
from mflow.states import RunState, TaskState


def write_dag(
    tmp_path: Path, tasks: list[dict[str, Any]], config: dict[str, Any] | None = None, **dag: Any
) -> Path:
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": tasks, **dag}))
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def run_dag(
    tmp_path: Path,
    tasks: list[dict[str, Any]],
    *,
    concurrency: int = 3,
    config: dict[str, Any] | None = None,
    plan: Plan | None = None,
    fail_fast: bool = False,
    **dag: Any,
) -> tuple[Any, Recorder]:
    write_dag(tmp_path, tasks, config, **dag)
    project = load_project(
        tmp_path / "config.json" if config is not None else None, tmp_path / "tasks.json", None
    )
    recorder = Recorder()
    log_dir = tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)
    if config is not None:  # as `mflow` without -j: the config's value, re-read live
        concurrency = project.config.max_process_concurrency
    settings = Settings(
        run_id=7,
        log_dir=log_dir,
        concurrency=concurrency,
        concurrency_fixed=config is None,
        fail_fast=fail_fast,
    )
    runner = Runner(
        project, plan or Plan(tuple(project.dag.tasks)), settings, Listeners([recorder])
    )
    return runner.run(), recorder


def test_concurrency_bound_observed_from_inside_the_tasks(tmp_path: Path) -> None:
    tasks = [bash(f"t{i}", TRACE.format(s=0.3)) for i in range(9)]
    outcome, _ = run_dag(tmp_path, tasks, concurrency=3)
    assert outcome.exit_code == 0
    pairs = intervals(tmp_path / "trace")
    assert len(pairs) == 9
    assert max_overlap(pairs) == 3


def test_an_end_is_announced_in_order_after_its_dependents_started(tmp_path: Path) -> None:
    """Listeners see a's end before b's start, yet b's process is running by then: writing
    about an end (master log, store, console) does not delay what it made ready."""
    write_dag(tmp_path, [bash("a", "true"), bash("b", "sleep 5", "a")])
    project = load_project(None, tmp_path / "tasks.json", None)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    seen: dict[str, Any] = {}

    class AtEndOfA(Recorder):
        def handle(self, event: Any) -> None:
            super().handle(event)
            if getattr(event, "task_id", None) == "a" and type(event).__name__ == "TaskEnded":
                seen["b"] = runner.running.get("b")
                seen["events"] = [(type(e).__name__, e.task_id) for e in self.events[1:]]
                signal.raise_signal(signal.SIGTERM)  # b has been seen: no need to wait for it

    settings = Settings(run_id=1, log_dir=log_dir, concurrency=2, concurrency_fixed=True)
    runner = Runner(project, Plan(("a", "b")), settings, Listeners([AtEndOfA()]))
    runner.run()
    assert seen["events"] == [("TaskStarted", "a"), ("TaskEnded", "a")]
    attempt = seen["b"]
    assert attempt is not None and attempt.pid is not None
    assert (log_dir / "master_1_task_b.log").read_text().startswith("===== mflow ")


def test_a_listener_that_raises_stops_the_run_with_its_own_error(tmp_path: Path) -> None:
    """The error escapes `Runner.run` as it was raised, each event reached the listeners at
    most once, and the run's signal handlers are undone."""
    write_dag(tmp_path, [bash("a", "true"), bash("b", "true", "a")])
    project = load_project(None, tmp_path / "tasks.json", None)
    log_dir = tmp_path / "logs"
    log_dir.mkdir()

    class Broken(Recorder):
        def handle(self, event: Any) -> None:
            super().handle(event)
            if type(event).__name__ == "TaskEnded":
                raise OSError(28, "No space left on device")

    broken = Broken()
    handler = signal.getsignal(signal.SIGTERM)
    settings = Settings(run_id=1, log_dir=log_dir, concurrency=2, concurrency_fixed=True)
    runner = Runner(project, Plan(("a", "b")), settings, Listeners([broken]))
    with pytest.raises(OSError, match="No space left on device"):
        runner.run()
    names = [(type(e).__name__, getattr(e, "task_id", None)) for e in broken.events]
    assert len(names) == len(set(names)), names
    assert names[-1] == ("TaskEnded", "a")
    assert signal.getsignal(signal.SIGTERM) is handler


def test_dependent_starts_before_an_unrelated_long_task_ends(tmp_path: Path) -> None:
    tasks = [
        bash("long", TRACE.format(s=2)),
        bash("a", TRACE.format(s=0.05)),
        bash("b", TRACE.format(s=0.05), "a"),
        bash("c", TRACE.format(s=0.05), "b"),
    ]
    outcome, _rec = run_dag(tmp_path, tasks, concurrency=3)
    assert outcome.exit_code == 0
    lines = dict(
        ((tid, what), float(t))
        for tid, what, t in (line.split() for line in (tmp_path / "trace").read_text().splitlines())
    )
    assert lines[("c", "start")] < lines[("long", "end")]
    assert lines[("c", "start")] - lines[("a", "start")] < 1.5


def test_failure_marks_downstream_upstream_failed_and_independent_branch_runs(
    tmp_path: Path,
) -> None:
    tasks = [
        bash("bad", "exit 3"),
        bash("after_bad", "touch after_bad.ran", "bad"),
        bash("after_after", "touch after_after.ran", "after_bad"),
        bash("independent", "sleep 0.2; touch independent.ran"),
    ]
    outcome, rec = run_dag(tmp_path, tasks)
    assert outcome.exit_code == 1
    assert outcome.state is RunState.FAILED
    assert rec.ended("bad")[-1].state is TaskState.FAILED
    assert rec.ended("bad")[-1].exit_code == 3
    assert rec.ended("after_bad")[-1].state is TaskState.UPSTREAM_FAILED
    assert rec.ended("after_after")[-1].state is TaskState.UPSTREAM_FAILED
    assert rec.started("after_bad") == []
    assert not (tmp_path / "after_bad.ran").exists()
    assert (tmp_path / "independent.ran").exists()
    assert rec.ended("independent")[-1].state is TaskState.SUCCESS


def test_fail_fast_starts_nothing_new_but_lets_running_tasks_finish(tmp_path: Path) -> None:
    tasks = [
        bash("slow", "sleep 0.6; touch slow.done"),
        bash("bad", "sleep 0.1; exit 1"),
        bash("later", "touch later.ran", "slow"),
    ]
    outcome, rec = run_dag(tmp_path, tasks, fail_fast=True)
    assert outcome.exit_code == 1
    assert (tmp_path / "slow.done").exists()
    assert not (tmp_path / "later.ran").exists()
    assert rec.started("later") == []


def test_retries_succeed_on_the_third_attempt(tmp_path: Path) -> None:
    command = (
        "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; "
        'echo "attempt $MFLOW_ATTEMPT"; [ $n -ge 3 ]'
    )
    tasks = [bash("flaky", command, retries=2, retry_delay=0.1)]
    outcome, rec = run_dag(tmp_path, tasks)
    assert outcome.exit_code == 0
    ends = rec.ended("flaky")
    assert [e.state for e in ends] == [TaskState.FAILED, TaskState.FAILED, TaskState.SUCCESS]
    assert [e.attempt for e in ends] == [1, 2, 3]
    assert ends[0].retry_in == pytest.approx(0.1)
    assert ends[1].retry_in == pytest.approx(0.2)  # the delay doubles
    log = (tmp_path / "logs" / "master_7_task_flaky.log").read_text()
    assert log.count("===== mflow") == 3
    assert "attempt 1/3" in log and "attempt 3/3" in log
    assert "attempt 3\n" in log


def test_retries_exhausted_leave_the_task_failed(tmp_path: Path) -> None:
    outcome, rec = run_dag(tmp_path, [bash("never", "exit 1", retries=1, retry_delay=0)])
    assert outcome.exit_code == 1
    assert [e.state for e in rec.ended("never")] == [TaskState.FAILED, TaskState.FAILED]
    assert rec.ended("never")[-1].retry_in is None


def test_timeout_kills_the_process_group_including_a_grandchild(tmp_path: Path) -> None:
    command = "sleep 60 & echo $! > grandchild.pid; sleep 60"
    started = time.monotonic()
    _outcome, rec = run_dag(tmp_path, [bash("slow", command, timeout=1)])
    assert time.monotonic() - started < 8
    end = rec.ended("slow")[-1]
    assert end.state is TaskState.FAILED
    assert "timed out after 1.00s" in (end.reason or "")
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert not alive(grandchild)


def test_timeout_escalates_to_sigkill_when_sigterm_is_ignored(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from mflow.tasks.shell import BashTask

    monkeypatch.setattr(BashTask, "kill_grace", 0.5)
    command = "trap '' TERM; sleep 30 & echo $! > child.pid; wait"
    _outcome, rec = run_dag(tmp_path, [bash("stubborn", command, timeout=0.5)])
    end = rec.ended("stubborn")[-1]
    assert end.state is TaskState.FAILED
    assert end.exit_code == 128 + signal.SIGKILL
    assert not alive(int((tmp_path / "child.pid").read_text()))


def test_task_log_receives_output_while_the_task_runs(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "master_7_task_talker.log"
    seen: list[str] = []

    def watch() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if log.exists() and "early line" in log.read_text():
                seen.append(log.read_text())
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    _outcome, _rec = run_dag(tmp_path, [bash("talker", "echo early line; sleep 2; echo late line")])
    watcher.join()
    assert seen, "the early line never reached the log while the task ran"
    assert "late line" not in seen[0].splitlines()
    assert "late line" in log.read_text().splitlines()


def test_task_environment_has_mflow_variables_config_env_and_task_env(tmp_path: Path) -> None:
    config = {"env": [{"key": "BASE", "value": "b"}, {"key": "DERIVED", "value": "${BASE}-x"}]}
    tasks = [bash("show", "env > env.txt; pwd > pwd.txt", env={"OWN": "${DERIVED}/own"}, cwd="sub")]
    (tmp_path / "sub").mkdir()
    os.environ["MFLOW_PASSKEY"] = "top-secret-passkey"
    try:
        outcome, _ = run_dag(tmp_path, tasks, config=config)
    finally:
        del os.environ["MFLOW_PASSKEY"]
    assert outcome.exit_code == 0
    env = dict(
        line.split("=", 1)
        for line in (tmp_path / "sub/env.txt").read_text().splitlines()
        if "=" in line
    )
    assert env["MFLOW_RUN_ID"] == "7"
    assert env["MFLOW_TASK_ID"] == "show"
    assert env["MFLOW_ATTEMPT"] == "1"
    assert env["MFLOW_LOG_DIR"] == str(tmp_path / "logs")
    assert env["BASE"] == "b" and env["DERIVED"] == "b-x" and env["OWN"] == "b-x/own"
    assert "MFLOW_PASSKEY" not in env
    assert (tmp_path / "sub/pwd.txt").read_text().strip() == str(tmp_path / "sub")


def test_default_working_directory_is_the_tasks_file_directory(tmp_path: Path) -> None:
    _outcome, _ = run_dag(tmp_path, [bash("here", "pwd > where.txt")])
    assert (tmp_path / "where.txt").read_text().strip() == str(tmp_path)


def test_missing_executable_fails_with_127_and_says_so_in_the_log(tmp_path: Path) -> None:
    tasks = [
        {"id": "nope", "type": "command", "command": "no-such-program-xyz"},
        bash("nope_bash", "no-such-program-xyz --flag"),
    ]
    outcome, rec = run_dag(tmp_path, tasks)
    assert outcome.exit_code == 1
    for tid in ("nope", "nope_bash"):
        end = rec.ended(tid)[-1]
        assert end.state is TaskState.FAILED
        assert end.exit_code == 127
        log = (tmp_path / "logs" / f"master_7_task_{tid}.log").read_text()
        assert "no-such-program-xyz: command not found" in log


def test_command_type_passes_arguments_without_a_shell(tmp_path: Path) -> None:
    tasks = [
        {
            "id": "args",
            "type": "command",
            "command": "printf",
            "args": ["%s|", "a b", "$HOME", "*", 3],
        }
    ]
    _outcome, _ = run_dag(tmp_path, tasks)
    log = (tmp_path / "logs" / "master_7_task_args.log").read_text()
    assert "a b|$HOME|*|3|" in log


def test_oneshot_plan_ignores_dependencies(tmp_path: Path) -> None:
    tasks = [bash("first", "touch first.ran"), bash("second", "touch second.ran", "first")]
    outcome, _rec = run_dag(tmp_path, tasks, plan=Plan(("second",)))
    assert outcome.exit_code == 0
    assert (tmp_path / "second.ran").exists() and not (tmp_path / "first.ran").exists()


def test_resumed_plan_skips_done_tasks_and_keeps_counting_attempts(tmp_path: Path) -> None:
    tasks = [bash("done", "touch done.ran"), bash("todo", "echo $MFLOW_ATTEMPT > attempt", "done")]
    plan = Plan(("done", "todo"), done=frozenset({"done"}), attempts={"done": 1, "todo": 2})
    outcome, _rec = run_dag(tmp_path, tasks, plan=plan)
    assert outcome.exit_code == 0
    assert not (tmp_path / "done.ran").exists()
    assert (tmp_path / "attempt").read_text().strip() == "3"


def test_config_edit_mid_run_changes_concurrency(tmp_path: Path) -> None:
    config = {"max_process_concurrency": 1, "check_new_config_interval": 0.2}
    tasks = [bash(f"t{i}", TRACE.format(s=0.4)) for i in range(10)]

    def raise_limit() -> None:
        time.sleep(0.7)
        (tmp_path / "config.json").write_text(json.dumps({**config, "max_process_concurrency": 4}))

    editor = threading.Thread(target=raise_limit)
    editor.start()
    outcome, rec = run_dag(tmp_path, tasks, config=config)
    editor.join()
    assert outcome.exit_code == 0
    pairs = sorted(intervals(tmp_path / "trace"))
    assert max_overlap(pairs[:2]) == 1  # the first ones ran one at a time
    assert max_overlap(pairs) == 4
    notices = [e for e in rec.events if type(e).__name__ == "RunNotice"]
    assert any("max_process_concurrency 1 -> 4" in e.message for e in notices)


def test_invalid_config_edit_mid_run_warns_and_keeps_values(tmp_path: Path) -> None:
    config = {"max_process_concurrency": 2, "check_new_config_interval": 0.1}
    tasks = [bash(f"t{i}", TRACE.format(s=0.3)) for i in range(6)]

    def break_config() -> None:
        time.sleep(0.3)
        (tmp_path / "config.json").write_text('{"max_process_concurrency": "lots"')

    editor = threading.Thread(target=break_config)
    editor.start()
    outcome, rec = run_dag(tmp_path, tasks, config=config)
    editor.join()
    assert outcome.exit_code == 0
    assert max_overlap(intervals(tmp_path / "trace")) == 2
    warnings = [e for e in rec.events if type(e).__name__ == "RunNotice"]
    assert any(e.level == "WARNING" and "config.json" in e.message for e in warnings)


def test_exit_watcher_without_pidfd_still_wakes_on_exit(tmp_path: Path, monkeypatch: Any) -> None:
    import mflow.runner

    original = mflow.runner.ExitWatcher
    monkeypatch.setattr(mflow.runner, "ExitWatcher", lambda: original(use_pidfd=False))
    tasks = [bash("a", "true"), bash("b", "true", "a"), bash("c", "exit 2", "b")]
    started = time.monotonic()
    _outcome, rec = run_dag(tmp_path, tasks)
    assert time.monotonic() - started < 3
    assert rec.ended("b")[-1].state is TaskState.SUCCESS
    assert rec.ended("c")[-1].exit_code == 2
