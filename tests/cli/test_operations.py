"""The rough edges an operator meets from the `mflow` command (issue 12): versions, completion,
the latest run by `last`, what a failed task said last, how states read, a closed pipe,
conflicting options, a dry run that must not touch the store, positional DAG files."""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mflow_cli import MflowRunner, Result, Terminal
from support import bash

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def write(path: Path, tasks: list[dict[str, Any]], name: str = "ops") -> Path:
    path.write_text(json.dumps({"name": name, "tasks": tasks}))
    return path


def ok(result: Result) -> Result:
    assert result.code == 0, result
    return result


def db(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp_path / "mflow-home" / "state.db")


def test_version_prints_the_version(mflow: MflowRunner) -> None:
    from mflow import __version__

    assert mflow("--version") == (0, f"mflow {__version__}\n", "")


def test_install_completion_writes_a_bash_completion_script(
    tmp_path: Path, mflow_env: dict[str, str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # As an operator does it: from a bash prompt (the shell is found among mflow's parents,
    # so the command goes through bash here; under pytest alone there may be no shell).
    command = f"{shlex.quote(sys.executable)} -m mflow --install-completion"
    done = subprocess.run(
        ["bash", "-c", command],
        env={**mflow_env, "HOME": str(home)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done
    assert "bash completion installed" in done.stdout
    script = (home / ".bash_completions" / "mflow.sh").read_text()
    assert "_MFLOW_COMPLETE" in script
    assert "mflow.sh" in (home / ".bashrc").read_text()


def test_logs_last_is_the_latest_top_level_runs_task(tmp_path: Path, mflow: MflowRunner) -> None:
    write(tmp_path / "tasks.json", [bash("a", "echo first")])
    ok(mflow())
    write(tmp_path / "tasks.json", [bash("a", "echo second")])
    ok(mflow())
    assert "second" in ok(mflow("logs", "last", "a")).stdout
    assert "first" in ok(mflow("logs", "1", "a")).stdout
    wrong = mflow("logs", "latest", "a")
    assert wrong.code == 2 and "expected a run id or 'last'" in wrong.stderr


def test_the_summary_shows_the_last_ten_lines_of_a_failed_tasks_log(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    command = "for i in $(seq 1 15); do echo line $i; done; exit 3"
    write(tmp_path / "tasks.json", [bash("broken", command), bash("fine", "true")])
    result = mflow()
    assert result.code == 1
    tail = [line for line in result.out_lines if line.startswith("    | ")]
    assert tail == [f"    | line {i}" for i in range(6, 16)]
    at = result.out_lines.index(tail[0])
    assert "failed: broken" in result.out_lines[at - 1]


def test_tasks_never_started_read_not_started_for_people_and_none_in_json(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    # --fail-fast: after a fails nothing new starts, so c (after b) never does.
    tasks = [bash("a", "exit 1"), bash("b", "sleep 0.3"), bash("c", "true", "b")]
    write(tmp_path / "tasks.json", tasks)
    summary = mflow("--fail-fast", "-j", "2")
    ended = next(line for line in summary.out_lines if line.startswith("run 1 FAILED"))
    assert {"1 SUCCESS", "1 FAILED", "1 not started"} == set(ended.split(": ", 1)[1].split(", "))
    table = ok(mflow("status")).stdout
    assert re.search(r"^  c +not started ", table, re.M), table
    assert "NONE" not in table
    tasks = json.loads(ok(mflow("status", "--json")).stdout)["tasks"]
    assert {t["task_id"]: t["state"] for t in tasks} == {"a": "FAILED", "b": "SUCCESS", "c": "NONE"}


def test_status_without_a_run_id_is_the_latest_run_that_is_not_a_child(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    write(tmp_path / "child.json", [bash("inner", "true")], name="child")
    write(tmp_path / "tasks.json", [{"id": "kid", "type": "mflow", "taskfile": "child.json"}])
    ok(mflow())
    assert ok(mflow("status")).out_lines[0].startswith("run 1 ops SUCCESS")
    assert ok(mflow("logs", "last", "kid")).stdout.startswith("===== mflow ")


def test_status_of_a_run_of_another_dag_is_an_error(tmp_path: Path, mflow: MflowRunner) -> None:
    write(tmp_path / "tasks.json", [bash("a", "true")])
    ok(mflow())
    result = mflow("status", "1", "--dag", "nightly")
    assert result.code == 2
    assert result.err_lines[0].startswith("run 1 is a run of DAG 'ops', not 'nightly'")


def big_dag(path: Path, n: int = 3000) -> Path:
    return write(path, [bash(f"task_{i:05}", "true") for i in range(n)])


@pytest.mark.parametrize(
    "command",
    [["graph", "--format", "dot"], ["--dry-run"], ["validate", "--help"]],
    ids=["graph", "dry-run", "help"],
)
def test_a_closed_pipe_is_not_a_failure(
    tmp_path: Path, mflow_env: dict[str, str], command: list[str]
) -> None:
    big_dag(tmp_path / "tasks.json")
    mflow = [sys.executable, "-m", "mflow", *command]
    # `head -1` exits after one line: what mflow writes after that hits a closed pipe.
    done = subprocess.run(
        ["bash", "-c", 'set -o pipefail; "$@" | head -1 >/dev/null', "bash", *mflow],
        cwd=tmp_path,
        env=mflow_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_runs_into_a_closed_pipe_exits_0(tmp_path: Path, mflow_env: dict[str, str]) -> None:
    from mflow.state import StoreLocation, open_store
    from mflow.state.base import NewRun

    store = open_store(StoreLocation(f"sqlite:///{tmp_path / 'mflow-home' / 'state.db'}"))
    for n in range(400):
        store.start_run(NewRun(f"dag{n}", "/x.json", "h", 1, float(n)), lock=False)
    store.close()
    done = subprocess.run(
        "set -o pipefail; python -m mflow runs --json -n 400 | head -2",
        shell=True,
        executable="/bin/bash",
        cwd=tmp_path,
        env={**mflow_env, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, ""), done
    assert done.stdout.startswith("[\n")


def test_oneshot_and_target_together_are_an_error(tmp_path: Path, mflow: MflowRunner) -> None:
    write(tmp_path / "tasks.json", [bash("a", "true"), bash("b", "true", "a")])
    result = mflow("--oneshot", "a", "--target", "b")
    assert result.code == 2
    assert result.err_lines == [
        "--oneshot and --target choose the tasks in different ways: give one"
    ]
    assert not (tmp_path / "logs").exists()


def test_resume_dry_run_changes_nothing_in_the_store(tmp_path: Path, mflow: MflowRunner) -> None:
    write(tmp_path / "tasks.json", [bash("a", "true"), bash("b", "exit 1", "a")])
    assert mflow().code == 1
    before = db(tmp_path).execute("select * from mflow_runs").fetchall()
    plan = ok(mflow("--resume", "1", "--dry-run"))
    assert "a [bash] already SUCCESS, kept" in plan.stdout
    assert db(tmp_path).execute("select * from mflow_runs").fetchall() == before


def test_dry_run_json_is_one_document(tmp_path: Path, mflow: MflowRunner) -> None:
    write(tmp_path / "tasks.json", [bash("a", "echo hi"), bash("b", "true", "a")])
    plan = json.loads(ok(mflow("--dry-run", "--json")).stdout)
    assert plan["dag"] == "ops" and plan["resumes"] is None
    assert [(t["id"], t["after"], t["runs"]) for t in plan["tasks"]] == [
        ("a", [], "bash -c 'echo hi'"),
        ("b", ["a"], "true"),
    ]


def test_the_run_record_keeps_the_log_dir_option(tmp_path: Path, mflow: MflowRunner) -> None:
    write(tmp_path / "tasks.json", [bash("a", "true")])
    ok(mflow("--log-dir", "elsewhere"))
    run = json.loads(ok(mflow("runs", "--json")).stdout)[0]
    assert run["log_directory"] == str(tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "master_1_task_a.log").exists()


def test_run_takes_the_dag_file_as_an_argument(tmp_path: Path, mflow: MflowRunner) -> None:
    write(tmp_path / "dag.json", [bash("a", "true")], name="positional")
    assert ok(mflow("run", "dag.json", "--quiet")).stdout.startswith("run 1 SUCCESS")
    both = mflow("run", "dag.json", "--taskfile", "other.json")
    assert both.code == 2 and "two DAG files" in both.stderr


def test_a_dag_file_where_a_command_is_expected_gets_a_hint(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    write(tmp_path / "dag.yaml", [bash("a", "true")])
    result = mflow("dag.yaml")
    assert result.code == 2
    assert "mflow --taskfile dag.yaml" in result.stderr
    assert "mflow run dag.yaml" in result.stderr


def test_a_resumed_task_gets_its_retries_again_and_says_which_try_it_is(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    # Fails its first three attempts (the first run: 1 + 2 retries), then succeeds.
    command = 'echo x >> n; [ "$(wc -l < n)" -gt 4 ]'
    write(tmp_path / "tasks.json", [bash("a", command, retries=2, retry_delay=0)])
    assert mflow().code == 1
    ok(mflow("--resume", "last"))
    log = (tmp_path / "logs" / "master_1_task_a.log").read_text()
    headers = re.findall(r"^===== mflow .* attempt (.*?): bash", log, re.M)
    assert headers == ["1/3", "2/3", "3/3", "4 (resumed: try 1/3)", "5 (resumed: try 2/3)"]


def test_status_on_a_narrow_terminal_never_breaks_a_log_path(
    tmp_path: Path, mflow: MflowRunner, mflow_env: dict[str, str]
) -> None:
    write(tmp_path / "tasks.json", [bash("a_task_with_a_long_name", "exit 1")])
    mflow()
    env = {k: v for k, v in mflow_env.items() if k not in {"NO_COLOR", "FORCE_COLOR"}}
    env.update(TERM="xterm-256color", COLUMNS="70")
    code, screen = Terminal.start(tmp_path, env, "status").finish(timeout=30)
    assert code == 0, screen
    path = str(tmp_path / "logs" / "master_1_task_a_task_with_a_long_name.log")
    assert path in ANSI.sub("", screen).replace("\r", ""), screen
