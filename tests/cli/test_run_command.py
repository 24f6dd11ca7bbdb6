"""`mflow` / `mflow run` as operators start it: exit codes, signals, background runs, the
console views, --dry-run, --oneshot and --target."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support import TRACE, alive, bash, intervals, max_overlap

REPO = Path(__file__).resolve().parents[2]


def mflow_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFLOW_")}
    env["MFLOW_HOME"] = str(tmp_path / "home")
    return env


def write_dag(tmp_path: Path, tasks: list[dict[str, Any]], **dag: Any) -> Path:
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"tasks": tasks, **dag}))
    return path


def mflow(tmp_path: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mflow", *args],
        cwd=tmp_path,
        env=mflow_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


def status_json(tmp_path: Path, run_id: str = "") -> dict[str, Any]:
    result = mflow(tmp_path, "status", *([run_id] if run_id else []), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def task_states(tree: dict[str, Any]) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in tree["tasks"]}


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_successful_run_exits_0_and_is_recorded(tmp_path: Path) -> None:
    write_dag(tmp_path, [bash("a", "echo hello"), bash("b", "echo world", "a")])
    result = mflow(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "run 1 SUCCESS" in result.stdout
    tree = status_json(tmp_path)
    assert tree["run"]["status"] == "SUCCESS"
    assert task_states(tree) == {"a": "SUCCESS", "b": "SUCCESS"}
    log = (tmp_path / "logs" / "master_1_task_b.log").read_text()
    assert "world" in log
    master = (tmp_path / "logs" / "mflow.log").read_text()
    assert "run=1 run started" in master and "run=1 run ended SUCCESS" in master


def test_failed_task_exits_1_and_the_summary_names_its_log_and_the_resume_command(
    tmp_path: Path,
) -> None:
    write_dag(tmp_path, [bash("ok", "true"), bash("broken", "echo oops >&2; exit 4")])
    result = mflow(tmp_path, "run")
    assert result.returncode == 1
    assert "failed: broken" in result.stdout
    assert "master_1_task_broken.log" in result.stdout
    assert "resume with: mflow --resume 1" in result.stdout
    assert "oops" in (tmp_path / "logs" / "master_1_task_broken.log").read_text()


def test_invalid_input_exits_2_without_traceback_and_records_nothing(tmp_path: Path) -> None:
    write_dag(tmp_path, [bash("a", "true", "missing")])
    result = mflow(tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "unknown task 'missing'" in result.stderr
    assert not (tmp_path / "home" / "state.db").exists()


def test_log_directory_without_trailing_slash_is_created(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"log_directory": "deep/er/logs"}))
    write_dag(tmp_path, [bash("a", "echo x")])
    result = mflow(tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "deep/er/logs/master_1_task_a.log").exists()
    assert (tmp_path / "deep/er/logs/mflow.log").exists()


def test_background_run_with_stdin_closed_and_output_discarded(tmp_path: Path) -> None:
    write_dag(tmp_path, [bash("a", "echo in-the-log"), bash("b", "cat; echo done", "a")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "mflow"],
        cwd=tmp_path,
        env=mflow_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.wait(timeout=60) == 0
    assert task_states(status_json(tmp_path)) == {"a": "SUCCESS", "b": "SUCCESS"}
    assert "in-the-log" in (tmp_path / "logs" / "master_1_task_a.log").read_text()


def test_run_with_stdout_and_stderr_closed(tmp_path: Path) -> None:
    write_dag(tmp_path, [bash("a", "echo fine")])
    command = f"{sys.executable} -m mflow >&- 2>&- <&-"
    result = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=mflow_env(tmp_path), timeout=60
    )
    assert result.returncode == 0
    assert status_json(tmp_path)["run"]["status"] == "SUCCESS"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_cancels_every_task_and_leaves_no_process_behind(
    tmp_path: Path, signum: int, code: int
) -> None:
    write_dag(
        tmp_path,
        [
            bash("parent", "sleep 60 & echo $! > grandchild.pid; echo $$ > parent.pid; wait"),
            bash("plain", "echo $$ > plain.pid; sleep 60"),
            bash("never", "touch never.ran", "plain"),
        ],
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mflow"],
        cwd=tmp_path,
        env=mflow_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid_files = [tmp_path / n for n in ("grandchild.pid", "parent.pid", "plain.pid")]
    wait_for(lambda: all(p.exists() and p.read_text().strip() for p in pid_files))
    pids = [int(p.read_text()) for p in pid_files]
    proc.send_signal(signum)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    for pid in pids:
        assert not alive(pid), f"process {pid} survived"
    assert not (tmp_path / "never.ran").exists()
    tree = status_json(tmp_path)
    assert tree["run"]["status"] == "CANCELLED"
    states = task_states(tree)
    assert states["parent"] == "CANCELLED" and states["plain"] == "CANCELLED"
    assert states["never"] == "NONE"
    assert "Traceback" not in err


def test_plain_lines_in_a_pipe_have_no_colour_codes(tmp_path: Path) -> None:
    write_dag(tmp_path, [bash("a", "printf '\\033[31mred\\033[0m\\n'"), bash("b", "exit 1")])
    result = mflow(tmp_path)
    assert "START    a" in result.stdout and "SUCCESS  a" in result.stdout
    assert "\x1b[" not in result.stdout
    master = (tmp_path / "logs" / "mflow.log").read_text()
    assert "\x1b[" not in master


def test_live_view_on_a_terminal(tmp_path: Path) -> None:
    write_dag(tmp_path, [bash("a", "sleep 0.6"), bash("b", "sleep 0.3", "a")])
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mflow"],
        cwd=tmp_path,
        env={**mflow_env(tmp_path), "TERM": "xterm", "COLUMNS": "100"},
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(timeout=30) == 0
    text = output.decode(errors="replace")
    assert "\x1b[" in text  # rich drew something
    assert "mflow tasks run 1" in text  # the live view's title
    assert "run 1 SUCCESS" in text


def test_json_output_is_one_event_per_line(tmp_path: Path) -> None:
    write_dag(tmp_path, [bash("a", "true"), bash("b", "exit 2", "a")])
    result = mflow(tmp_path, "--json")
    assert result.returncode == 1
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["event"] == "RunStarted"
    assert events[-1]["event"] == "RunEnded" and events[-1]["state"] == "FAILED"
    ends = [e for e in events if e["event"] == "TaskEnded"]
    assert {(e["task_id"], e["state"]) for e in ends} == {("a", "SUCCESS"), ("b", "FAILED")}


def test_quiet_prints_only_the_summary(tmp_path: Path) -> None:
    write_dag(tmp_path, [bash("a", "true"), bash("b", "true", "a")])
    result = mflow(tmp_path, "--quiet")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        line for line in result.stdout.splitlines() if line.startswith("run 1 SUCCESS")
    ]


def test_dry_run_prints_order_and_commands_and_runs_nothing(tmp_path: Path) -> None:
    write_dag(
        tmp_path,
        [
            bash("second", "touch second.ran", "first"),
            bash("first", "touch first.ran"),
            {
                "id": "exec",
                "type": "command",
                "command": "printf",
                "args": ["a b"],
                "depends": ["second"],
            },
        ],
    )
    result = mflow(tmp_path, "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("1. first") and lines[3].startswith("2. second [bash] after first")
    assert "touch first.ran" in lines[2]
    assert "printf 'a b'" in result.stdout
    assert not (tmp_path / "first.ran").exists()
    assert not (tmp_path / "home" / "state.db").exists()
    assert not (tmp_path / "logs").exists()


def test_oneshot_runs_only_that_task(tmp_path: Path) -> None:
    write_dag(
        tmp_path,
        [bash("a", "touch a.ran"), bash("b", "touch b.ran", "a"), bash("c", "touch c.ran", "b")],
    )
    assert mflow(tmp_path, "--oneshot", "b").returncode == 0
    assert [p.name for p in sorted(tmp_path.glob("*.ran"))] == ["b.ran"]
    assert task_states(status_json(tmp_path)) == {"b": "SUCCESS"}


def test_target_runs_the_task_and_its_upstream_only(tmp_path: Path) -> None:
    write_dag(
        tmp_path,
        [
            bash("a", "touch a.ran"),
            bash("b", "touch b.ran", "a"),
            bash("c", "touch c.ran", "b"),
            bash("x", "touch x.ran"),
        ],
    )
    assert mflow(tmp_path, "--target", "b").returncode == 0
    assert [p.name for p in sorted(tmp_path.glob("*.ran"))] == ["a.ran", "b.ran"]


def test_unknown_target_is_a_usage_error(tmp_path: Path) -> None:
    write_dag(tmp_path, [bash("a", "true")])
    result = mflow(tmp_path, "--target", "nope")
    assert result.returncode == 2
    assert "--target: unknown task 'nope'" in result.stderr


def test_concurrency_option_overrides_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"max_process_concurrency": 1}))
    write_dag(tmp_path, [bash(f"t{i}", TRACE.format(s=0.3)) for i in range(4)])
    assert mflow(tmp_path, "-j", "4").returncode == 0
    assert max_overlap(intervals(tmp_path / "trace")) == 4
