"""What operators ask the state store from the `mflow` command (SPEC §4, issue 5 "Queries"):
`mflow runs`, `mflow status [RUN_ID]`, `mflow logs RUN_ID TASK [--follow]` (plain text in a
pipe, rich tables on a terminal, `--json` for tools) and `mflow db init [--sql --dialect D]`.

Every test has its own MFLOW_HOME (so its own SQLite store) and works in its own tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mflow_cli import MflowRunner, Result, Terminal
from support import bash, wait_for

from mflow.state.base import SCHEMA_VERSION

RUN_FIELDS = {
    "id",
    "dag",
    "taskfile",
    "status",
    "host",
    "pid",
    "started_at",
    "ended_at",
    "heartbeat_at",
    "log_directory",
    "parent_run_id",
    "parent_task_id",
    "note",
}
TASK_FIELDS = {
    "run_id",
    "task_id",
    "state",
    "attempt",
    "started_at",
    "ended_at",
    "exit_code",
    "pid",
    "host",
    "log_path",
    "reason",
}
DURATION = re.compile(r"\d+\.\d\ds")  # under a minute: 0.04s
STARTED = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TABLES = {
    "mflow_runs",
    "mflow_task_runs",
    "mflow_locks",
    "mflow_meta",
    "mflow_run_defs",
    "mflow_stops",
    "mflow_datasets",
    "mflow_partitions",
    "mflow_jobs",
    "mflow_fires",
    "mflow_lease",
    "mflow_members",
}


def write_dag(tmp_path: Path, name: str, tasks: list[dict[str, Any]]) -> str:
    """`<name>.json` in tmp_path (the DAG is named after the file); its name, for --taskfile."""
    (tmp_path / f"{name}.json").write_text(json.dumps({"tasks": tasks}))
    return f"{name}.json"


def ok(result: Result) -> Result:
    assert result.code == 0, result
    return result


def loads(result: Result) -> Any:
    return json.loads(ok(result).stdout)


def table(text: str, first_header: str) -> list[dict[str, str]]:
    """The rows of a plain-text table (columns aligned under their headers) as dicts.

    The table starts at the line whose first word is `first_header`; a row's cell is what lies
    under its header, so cells may hold spaces (a reason, a path)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [first_header])
    header = lines[start]
    names = header.split()
    starts = [header.index(f" {n}") + 1 if i else header.index(n) for i, n in enumerate(names)]
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip() or line[: starts[0]].strip():
            break  # a blank line or a line less indented than the table: the table is over
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def lines(path: Path) -> list[str]:
    """The lines of a file that may not exist yet (a task log, before the task starts)."""
    return path.read_text().splitlines() if path.exists() else []


def output_lines(log_text: str) -> list[str]:
    """A task log's lines without the attempt headers (which repeat the command)."""
    return [line for line in log_text.splitlines() if not line.startswith("===== mflow ")]


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.code == code, result
    assert result.stdout == ""
    assert len(result.err_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.fixture
def history(tmp_path: Path, mflow: MflowRunner) -> None:
    """Three runs: 1 alpha FAILED, 2 beta SUCCESS, 3 alpha SUCCESS."""
    alpha = write_dag(tmp_path, "alpha", [bash("a", "test -e fixed")])
    beta = write_dag(tmp_path, "beta", [bash("b", "true")])
    assert mflow("--taskfile", alpha, "--quiet").code == 1
    (tmp_path / "fixed").touch()
    ok(mflow("--taskfile", beta, "--quiet"))
    ok(mflow("--taskfile", alpha, "--quiet"))


@pytest.fixture
def failed_run(tmp_path: Path, mflow: MflowRunner) -> None:
    """Run 1 of DAG `tasks`, FAILED: `a` succeeds (stdout and stderr), `flaky` succeeds on its
    second attempt, `broken` exits 4, `after` never starts."""
    write_dag(
        tmp_path,
        "tasks",
        [
            bash("a", "echo to-stdout; echo to-stderr >&2"),
            bash(
                "flaky",
                "test -e flaked && exit 0; touch flaked; exit 1",
                retries=1,
                retry_delay=0,
            ),
            bash("broken", "echo about-to-break; exit 4", "a"),
            bash("after", "true", "broken"),
        ],
    )
    assert mflow("--quiet").code == 1


# ------------------------------------------------------------------------------ mflow runs


@pytest.mark.usefixtures("history")
def test_runs_lists_newest_first_as_plain_text_in_a_pipe(mflow: MflowRunner) -> None:
    result = ok(mflow("runs"))
    assert "\x1b[" not in result.stdout
    rows = table(result.stdout, "RUN")
    assert [(r["RUN"], r["DAG"], r["STATUS"]) for r in rows] == [
        ("3", "alpha", "SUCCESS"),
        ("2", "beta", "SUCCESS"),
        ("1", "alpha", "FAILED"),
    ]
    assert all(r["HOST"] and r["PID"].isdigit() and r["PARENT"] == "-" for r in rows)
    assert all(DURATION.fullmatch(r["DURATION"]) and STARTED.fullmatch(r["STARTED"]) for r in rows)


@pytest.mark.usefixtures("history")
def test_runs_filter_by_dag_status_and_limit(mflow: MflowRunner) -> None:
    def ids(*args: str) -> list[int]:
        return [run["id"] for run in loads(mflow("runs", "--json", *args))]

    assert ids("--dag", "alpha") == [3, 1]
    assert ids("--status", "FAILED") == [1]
    assert ids("--status", "success") == [3, 2]  # any case
    assert ids("--limit", "2") == [3, 2]
    assert ids("--dag", "alpha", "--status", "SUCCESS", "-n", "1") == [3]


@pytest.mark.usefixtures("history")
def test_runs_json_is_a_list_of_run_objects(tmp_path: Path, mflow: MflowRunner) -> None:
    runs = loads(mflow("runs", "--json"))
    assert isinstance(runs, list) and len(runs) == 3
    for run in runs:
        assert set(run) == RUN_FIELDS
        assert isinstance(run["pid"], int) and run["host"]
        assert run["started_at"] <= run["ended_at"]
        assert run["log_directory"] == str(tmp_path / "logs")
        assert run["parent_run_id"] is None and run["parent_task_id"] is None
    newest, middle, oldest = runs
    assert (newest["dag"], newest["status"]) == ("alpha", "SUCCESS")
    assert (middle["dag"], middle["status"]) == ("beta", "SUCCESS")
    assert (oldest["dag"], oldest["status"]) == ("alpha", "FAILED")
    assert Path(oldest["taskfile"]) == tmp_path / "alpha.json"
    assert newest["started_at"] >= middle["started_at"] >= oldest["started_at"]


def test_runs_in_an_empty_store_says_so(mflow: MflowRunner) -> None:
    assert ok(mflow("runs")).stdout == "no runs\n"
    assert loads(mflow("runs", "--json")) == []


def test_runs_with_an_unknown_status_exits_2_naming_the_known_ones(mflow: MflowRunner) -> None:
    assert_one_line_error(
        mflow("runs", "--status", "DONE"), 2, "'DONE'", "RUNNING, SUCCESS, FAILED, CANCELLED"
    )


# ---------------------------------------------------------------------------- mflow status


@pytest.mark.usefixtures("failed_run")
def test_status_shows_each_task_state_attempt_duration_exit_code_and_log(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    result = ok(mflow("status", "1"))
    assert "\x1b[" not in result.stdout
    assert result.out_lines[0].startswith("run 1 tasks FAILED  started 20")
    rows = {r["TASK"]: r for r in table(result.stdout, "TASK")}
    assert set(rows) == {"a", "flaky", "broken", "after"}
    logs = tmp_path / "logs"
    for task in ("a", "flaky", "broken"):
        assert rows[task]["LOG"] == str(logs / f"master_1_task_{task}.log")
        assert DURATION.fullmatch(rows[task]["DURATION"])
    assert (rows["a"]["STATE"], rows["a"]["ATTEMPT"], rows["a"]["EXIT"]) == ("SUCCESS", "1", "0")
    assert (rows["flaky"]["STATE"], rows["flaky"]["ATTEMPT"]) == ("SUCCESS", "2")
    broken = rows["broken"]
    assert (broken["STATE"], broken["ATTEMPT"], broken["EXIT"]) == ("FAILED", "1", "4")
    assert broken["REASON"] == "exit code 4"
    after = rows["after"]
    assert (after["STATE"], after["ATTEMPT"], after["EXIT"], after["LOG"]) == (
        "UPSTREAM_FAILED",
        "0",
        "-",
        "-",
    )
    assert after["REASON"] == "upstream 'broken' failed"


@pytest.mark.usefixtures("failed_run")
def test_status_without_a_run_id_shows_the_latest_run(tmp_path: Path, mflow: MflowRunner) -> None:
    ok(mflow("--oneshot", "a", "--quiet"))  # run 2
    latest = ok(mflow("status"))
    assert latest.out_lines[0].startswith("run 2 tasks SUCCESS")
    assert [r["TASK"] for r in table(latest.stdout, "TASK")] == ["a"]
    assert loads(mflow("status", "--json"))["run"]["id"] == 2
    assert ok(mflow("status", "1")).out_lines[0].startswith("run 1 tasks FAILED")


@pytest.mark.usefixtures("failed_run")
def test_status_json_is_the_run_and_its_tasks(tmp_path: Path, mflow: MflowRunner) -> None:
    tree = loads(mflow("status", "1", "--json"))
    assert set(tree) == {"run", "tasks"}
    assert set(tree["run"]) == RUN_FIELDS
    assert (tree["run"]["id"], tree["run"]["dag"], tree["run"]["status"]) == (1, "tasks", "FAILED")
    tasks = {t["task_id"]: t for t in tree["tasks"]}
    for task in tasks.values():
        assert set(task) == TASK_FIELDS | {"children"}
        assert task["run_id"] == 1 and task["children"] == []
    broken = tasks["broken"]
    assert (broken["state"], broken["attempt"], broken["exit_code"]) == ("FAILED", 1, 4)
    assert broken["reason"] == "exit code 4"
    assert broken["started_at"] <= broken["ended_at"]
    assert "about-to-break" in lines(Path(broken["log_path"]))
    assert (tasks["flaky"]["state"], tasks["flaky"]["attempt"]) == ("SUCCESS", 2)
    after = tasks["after"]
    assert (after["state"], after["attempt"], after["exit_code"], after["log_path"]) == (
        "UPSTREAM_FAILED",
        0,
        None,
        None,
    )


@pytest.mark.usefixtures("failed_run")
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_status_of_an_unknown_run_is_a_one_line_error_exit_2(
    mflow: MflowRunner, json_flag: list[str]
) -> None:
    assert_one_line_error(mflow("status", "99", *json_flag), 2, "run 99 not found")


def test_status_with_no_runs_at_all_says_so_and_exits_0_like_runs(mflow: MflowRunner) -> None:
    status = mflow("status")
    assert status.code == 0 and status.out_lines[0].startswith("no runs in sqlite:///"), status
    assert mflow("status", "--json") == (0, "null\n", "")
    assert mflow("runs").code == 0


# ------------------------------------------------------------------- on a terminal: rich


@pytest.mark.usefixtures("failed_run")
@pytest.mark.parametrize(
    ("command", "plain_header", "rich_headers"),
    [
        (["runs"], "RUN  DAG", ["run", "dag", "status", "started", "duration"]),
        (["status", "1"], "TASK  STATE", ["task", "state", "attempt", "duration", "exit", "log"]),
    ],
    ids=["runs", "status"],
)
def test_on_a_terminal_queries_print_a_rich_table(
    tmp_path: Path,
    mflow_env: dict[str, str],
    command: list[str],
    plain_header: str,
    rich_headers: list[str],
) -> None:
    env = {k: v for k, v in mflow_env.items() if k not in {"NO_COLOR", "FORCE_COLOR"}}
    env.update(TERM="xterm-256color", COLUMNS="200")
    code, screen = Terminal.start(tmp_path, env, *command).finish(timeout=30)
    assert code == 0, screen
    assert "\x1b[" in screen  # rich styled it
    assert plain_header not in screen  # not the pipe's layout
    words = ANSI.sub("", next(line for line in screen.splitlines() if "duration" in line)).split()
    at = words.index(rich_headers[0])
    assert words[at : at + len(rich_headers)] == rich_headers, screen
    assert "FAILED" in screen


# ------------------------------------------------------------------------------ mflow logs


@pytest.mark.usefixtures("failed_run")
def test_logs_prints_the_task_log(tmp_path: Path, mflow: MflowRunner) -> None:
    result = ok(mflow("logs", "1", "a"))
    assert result.stdout == (tmp_path / "logs" / "master_1_task_a.log").read_text()
    assert result.out_lines[0].startswith("===== mflow ")  # the attempt's header line
    assert "run 1 task a attempt 1/1" in result.out_lines[0]
    assert output_lines(result.stdout) == ["to-stdout", "to-stderr"]
    flaky = ok(mflow("logs", "1", "flaky")).stdout
    assert "attempt 1/2" in flaky and "attempt 2/2" in flaky  # every attempt


@pytest.mark.usefixtures("failed_run")
def test_logs_json_is_the_task_record_with_the_log_text(tmp_path: Path, mflow: MflowRunner) -> None:
    record = loads(mflow("logs", "1", "broken", "--json"))
    assert set(record) == TASK_FIELDS | {"text"}
    assert (record["run_id"], record["task_id"], record["state"]) == (1, "broken", "FAILED")
    assert (record["attempt"], record["exit_code"]) == (1, 4)
    log = tmp_path / "logs" / "master_1_task_broken.log"
    assert record["log_path"] == str(log)
    assert record["text"] == log.read_text()
    assert "about-to-break" in record["text"].splitlines()


@pytest.mark.usefixtures("failed_run")
def test_logs_of_a_task_that_never_started_says_so(mflow: MflowRunner) -> None:
    result = ok(mflow("logs", "1", "after"))
    assert result.stdout == ""
    assert result.stderr.strip() == "task after of run 1 has not started (state UPSTREAM_FAILED)"
    record = loads(mflow("logs", "1", "after", "--json"))
    assert (record["state"], record["log_path"], record["text"]) == ("UPSTREAM_FAILED", None, "")


@pytest.mark.usefixtures("failed_run")
@pytest.mark.parametrize(
    ("run_id", "task", "message"),
    [("1", "nope", "run 1 has no task 'nope'"), ("99", "a", "run 99 not found")],
    ids=["unknown-task", "unknown-run"],
)
def test_logs_of_an_unknown_task_or_run_is_a_one_line_error_exit_2(
    mflow: MflowRunner, run_id: str, task: str, message: str
) -> None:
    assert_one_line_error(mflow("logs", run_id, task), 2, message)
    assert_one_line_error(mflow("logs", run_id, task, "--follow"), 2, message)


class Pipe:
    """What a process writes to a pipe, read as it comes, with deadlines."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self.fd = process.stdout.fileno()
        self.data = b""
        self.closed = False

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")

    def read_until(self, line: str, timeout: float = 20.0) -> None:
        """Read until `line` has come as a whole line."""
        wait_for(
            lambda: self._read() or line in self.text.splitlines(),
            f"line {line!r} in {self.data!r}",
            timeout,
        )

    def read_to_end(self, timeout: float = 20.0) -> str:
        wait_for(lambda: self._read() or self.closed, f"the end of {self.data!r}", timeout)
        return self.text

    def _read(self) -> bool:
        """Take what has come (waiting a little for it); False, so that it reads as a poll."""
        if not self.closed and select.select([self.fd], [], [], 0.05)[0]:
            chunk = os.read(self.fd, 65536)
            self.data += chunk
            self.closed = not chunk
        return False


@pytest.fixture
def background(
    tmp_path: Path, mflow_env: dict[str, str]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; each is stopped (its whole session) when the test ends."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    (tmp_path / "release").touch()  # lets a task waiting for it finish on its own
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def start(
    tmp_path: Path,
    env: dict[str, str],
    started: list[subprocess.Popen[bytes]],
    *args: str,
    stdout: int = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "mflow", *args],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    started.append(process)
    return process


def run_until_logged(
    tmp_path: Path,
    env: dict[str, str],
    started: list[subprocess.Popen[bytes]],
    task: dict[str, Any],
    line: str,
) -> tuple[subprocess.Popen[bytes], Path]:
    """Run a one-task DAG in the background (run 1) until the task has logged `line`;
    the run and the task's log."""
    write_dag(tmp_path, "tasks", [task])
    log = tmp_path / "logs" / f"master_1_task_{task['id']}.log"
    run = start(tmp_path, env, started, "--quiet")
    wait_for(lambda: line in lines(log), f"{line!r} in the log of {task['id']}")
    return run, log


def follow(
    tmp_path: Path, env: dict[str, str], started: list[subprocess.Popen[bytes]], task_id: str
) -> tuple[subprocess.Popen[bytes], Pipe]:
    """`mflow logs 1 TASK --follow` in the background, its stdout a pipe."""
    process = start(
        tmp_path, env, started, "logs", "1", task_id, "--follow", stdout=subprocess.PIPE
    )
    return process, Pipe(process)


def test_logs_follow_prints_output_as_it_comes_and_stops_when_the_task_ends(
    tmp_path: Path,
    mflow_env: dict[str, str],
    background: list[subprocess.Popen[bytes]],
) -> None:
    # The task prints a line, waits (for the test, not for a clock), then prints another.
    command = "echo first-line; until [ -e release ]; do sleep 0.02; done; echo last-line"
    run, log = run_until_logged(
        tmp_path, mflow_env, background, bash("slow", command), "first-line"
    )

    following, out = follow(tmp_path, mflow_env, background, "slow")
    out.read_until("first-line")
    assert "last-line" not in out.text.splitlines()
    assert following.poll() is None  # the task is still running, so is --follow

    (tmp_path / "release").touch()
    assert following.wait(timeout=20) == 0  # it ends on its own once the task has
    text = out.read_to_end()
    assert output_lines(text) == ["first-line", "last-line"]
    assert text == log.read_text()  # everything, once
    assert run.wait(timeout=20) == 0


def test_logs_follow_keeps_following_while_a_retry_is_pending(
    tmp_path: Path,
    mflow_env: dict[str, str],
    background: list[subprocess.Popen[bytes]],
) -> None:
    # Attempt 1 fails once the test lets it; attempt 2 starts a second later and succeeds.
    # Between the two the store holds the task as FAILED ("...; retrying"): not the end.
    command = (
        "if [ -e failed-once ]; then echo second-attempt; exit 0; fi; "
        "touch failed-once; echo first-attempt; "
        "until [ -e release ]; do sleep 0.02; done; exit 1"
    )
    flaky = bash("flaky", command, retries=1, retry_delay=1)
    run, log = run_until_logged(tmp_path, mflow_env, background, flaky, "first-attempt")

    following, out = follow(tmp_path, mflow_env, background, "flaky")
    out.read_until("first-attempt")
    (tmp_path / "release").touch()
    assert following.wait(timeout=20) == 0
    text = out.read_to_end()
    assert output_lines(text) == ["first-attempt", "second-attempt"], text
    assert "run 1 task flaky attempt 2/2" in text
    assert text == log.read_text()
    assert run.wait(timeout=20) == 0


def test_logs_follow_stops_when_the_runs_mflow_was_killed(
    tmp_path: Path,
    mflow_env: dict[str, str],
    mflow: MflowRunner,
    background: list[subprocess.Popen[bytes]],
) -> None:
    # mflow is SIGKILLed while its task runs on (a task leads its own session): the store
    # keeps the run RUNNING, but nothing will ever end it, so --follow must not wait forever.
    command = "echo first-line; until [ -e release ]; do sleep 0.02; done"
    run, _ = run_until_logged(tmp_path, mflow_env, background, bash("slow", command), "first-line")
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=20)

    result = mflow("logs", "1", "slow", "--follow", timeout=20)
    assert result.code == 0, result
    assert output_lines(result.stdout) == ["first-line"]
    assert result.err_lines == [
        f"mflow: stopped following: run 1 is FAILED (owner gone): its mflow (pid {run.pid} "
        f"on {socket.gethostname()}) is gone or has not written a heartbeat for 60 s; "
        "`mflow --resume 1` with the same files continues it"
    ]


def test_a_run_whose_mflow_was_killed_shows_failed_owner_gone_at_once(
    tmp_path: Path,
    mflow_env: dict[str, str],
    mflow: MflowRunner,
    background: list[subprocess.Popen[bytes]],
) -> None:
    command = "echo first-line; until [ -e release ]; do sleep 0.02; done"
    run, _ = run_until_logged(tmp_path, mflow_env, background, bash("slow", command), "first-line")
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=20)
    listed = ok(mflow("runs"))
    assert re.search(r"^1 +\S+ +FAILED \(owner gone\) ", listed.stdout, re.M), listed.stdout
    (record,) = json.loads(ok(mflow("runs", "--json")).stdout)
    assert (record["status"], record["note"]) == ("FAILED", "owner gone")
    assert " FAILED (owner gone) " in ok(mflow("status")).out_lines[0]
    (tmp_path / "release").touch()


def test_logs_follow_of_a_task_that_ended_in_a_running_run_says_nothing_more(
    tmp_path: Path,
    mflow_env: dict[str, str],
    mflow: MflowRunner,
    background: list[subprocess.Popen[bytes]],
) -> None:
    # `quick` ends while `long` keeps the run RUNNING: following `quick` ends with its log,
    # and the run, alive, is no business of stderr.
    long = "until [ -e release ]; do sleep 0.02; done"
    write_dag(tmp_path, "tasks", [bash("quick", "echo done-quick"), bash("long", long)])
    start(tmp_path, mflow_env, background, "--quiet")

    def quick_succeeded() -> bool:
        result = mflow("status", "1", "--json")
        return result.code == 0 and result.stdout.count('"SUCCESS"') == 1

    wait_for(quick_succeeded, "quick's SUCCESS in the store")

    result = mflow("logs", "1", "quick", "--follow", timeout=20)
    assert (result.code, result.stderr) == (0, "")
    assert output_lines(result.stdout) == ["done-quick"]


@pytest.mark.usefixtures("failed_run")
def test_logs_follow_with_json_is_a_one_line_error_exit_2(mflow: MflowRunner) -> None:
    assert_one_line_error(
        mflow("logs", "1", "broken", "--follow", "--json"),
        2,
        "--follow prints the log as it grows: it cannot be used with --json (without --follow,",
    )


@pytest.mark.usefixtures("failed_run")
def test_logs_follow_on_an_ended_task_prints_the_log_and_returns(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    result = ok(mflow("logs", "1", "broken", "--follow", timeout=20))
    assert result.stdout == (tmp_path / "logs" / "master_1_task_broken.log").read_text()


# --------------------------------------------------------------------------- mflow db init


def test_db_init_is_idempotent(tmp_path: Path, mflow: MflowRunner) -> None:
    db = tmp_path / "mflow-home" / "state.db"
    for _ in range(2):
        result = ok(mflow("db", "init"))
        assert result.stdout == f"initialised sqlite:///{db}\n"
    with sqlite3.connect(db) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        versions = conn.execute("SELECT value FROM mflow_meta").fetchall()
    assert tables >= TABLES
    assert versions == [(str(SCHEMA_VERSION),)]  # one schema-version row, not one per init
    assert ok(mflow("runs")).stdout == "no runs\n"


def statements(ddl: str) -> list[str]:
    return [s.strip() for s in ddl.split(";\n") if s.strip()]


@pytest.mark.parametrize(
    ("dialect", "marker"),
    [
        ("oracle", "VARCHAR2(200 CHAR)"),
        ("postgresql", "GENERATED BY DEFAULT AS IDENTITY"),
        ("sqlite", "AUTOINCREMENT"),
    ],
)
def test_db_init_sql_prints_only_ddl_and_connects_nowhere(
    tmp_path: Path, mflow: MflowRunner, dialect: str, marker: str
) -> None:
    # A store that refuses connections at once: had mflow connected, it would exit 3.
    unreachable = "postgresql+psycopg://dba:pw@127.0.0.1:1/nowhere"
    result = mflow("db", "init", "--sql", "--dialect", dialect, "--state", unreachable)
    assert result.code == 0, result
    assert result.stderr == ""
    assert not (tmp_path / "mflow-home" / "state.db").exists()
    found = statements(result.stdout)
    assert all(
        s.startswith(("CREATE TABLE ", "CREATE INDEX ", "INSERT INTO ", "COMMIT")) for s in found
    )
    created = {s.split()[2] for s in found if s.startswith("CREATE TABLE ")}
    assert created == TABLES
    assert marker in result.stdout


def test_db_init_sql_for_sqlite_makes_a_store_mflow_uses(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    ddl = ok(mflow("db", "init", "--sql", "--dialect", "sqlite")).stdout
    db = tmp_path / "by-the-dba.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(ddl)
    write_dag(tmp_path, "tasks", [bash("a", "true")])
    store = f"sqlite:///{db}"
    ok(mflow("--state", store, "--quiet"))
    assert [run["status"] for run in loads(mflow("runs", "--state", store, "--json"))] == [
        "SUCCESS"
    ]


def test_db_init_sql_with_an_unknown_dialect_exits_2(mflow: MflowRunner) -> None:
    result = mflow("db", "init", "--sql", "--dialect", "mysql")
    assert result.code == 2
    assert result.stdout == ""
    assert "'mysql' is not one of 'oracle', 'postgresql', 'sqlite'" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_init_sql_without_a_dialect_prints_the_stores_own(mflow: MflowRunner) -> None:
    sqlite = ok(mflow("db", "init", "--sql"))
    assert "AUTOINCREMENT" in sqlite.stdout and "VARCHAR2" not in sqlite.stdout
    pg = ok(mflow("db", "init", "--sql", "--state", "postgresql+psycopg://u@nowhere:1/db"))
    assert "GENERATED BY DEFAULT AS IDENTITY" in pg.stdout
    zk = mflow("db", "init", "--sql", "--state", "zk://nowhere:1/mflow")
    assert zk.code == 2 and "is not an SQL database" in zk.stderr


def test_db_init_dialect_without_sql_is_a_usage_error(mflow: MflowRunner) -> None:
    result = mflow("db", "init", "--dialect", "oracle")
    assert result.code == 2
    assert result.err_lines == ["--dialect says which DDL --sql prints: give --sql too"]
