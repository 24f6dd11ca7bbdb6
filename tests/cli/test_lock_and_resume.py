"""The run lock and --resume from the `mflow` command, on every store backend: a second start
exits 3, stale owners stop blocking, a SIGKILLed run resumes without rerunning successes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support import STATE_BACKENDS, alive, bash


@pytest.fixture(params=STATE_BACKENDS)
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(request.getfixturevalue("zk_url"))


def env_for(tmp_path: Path, state_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFLOW_")}
    env["MFLOW_HOME"] = str(tmp_path / "home")
    if state_url:
        env["MFLOW_STATE"] = state_url
    return env


def mflow(tmp_path: Path, state_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mflow", *args],
        cwd=tmp_path,
        env=env_for(tmp_path, state_url),
        capture_output=True,
        text=True,
        timeout=120,
    )


def start(tmp_path: Path, state_url: str | None, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mflow", *args],
        cwd=tmp_path,
        env=env_for(tmp_path, state_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_dag(tmp_path: Path, tasks: list[dict[str, Any]], name: str = "nightly") -> None:
    (tmp_path / "tasks.json").write_text(json.dumps({"name": name, "tasks": tasks}))


def wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def status(tmp_path: Path, state_url: str | None, *args: str) -> dict[str, Any]:
    result = mflow(tmp_path, state_url, "status", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_second_start_of_a_running_dag_exits_3_naming_the_active_run(
    tmp_path: Path, state_url: str
) -> None:
    write_dag(tmp_path, [bash("hold", "touch started; sleep 30"), bash("quick", "true")])
    first = start(tmp_path, state_url)
    try:
        wait_for(tmp_path / "started")
        second = mflow(tmp_path, state_url)
        assert second.returncode == 3, second.stderr
        assert "DAG 'nightly' is already running: run 1 on host" in second.stderr
        assert f"{socket.gethostname()}, pid {first.pid}" in second.stderr
        concurrent = mflow(tmp_path, state_url, "--allow-concurrent", "--oneshot", "quick")
        assert concurrent.returncode == 0, concurrent.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)


def test_run_whose_owner_died_no_longer_blocks(tmp_path: Path, state_url: str) -> None:
    write_dag(tmp_path, [bash("hold", "echo $$ > hold.pid; sleep 30")])
    first = start(tmp_path, state_url)
    wait_for(tmp_path / "hold.pid")
    first.kill()  # SIGKILL: no chance to release the lock
    first.wait()
    os.kill(int((tmp_path / "hold.pid").read_text()), signal.SIGKILL)
    write_dag(tmp_path, [bash("hold", "echo second")])
    result = mflow(tmp_path, state_url)
    assert result.returncode == 0, result.stderr
    runs = json.loads(mflow(tmp_path, state_url, "runs", "--json").stdout)
    assert [(r["id"], r["status"]) for r in runs] == [(2, "SUCCESS"), (1, "FAILED")]


def test_sigkilled_run_resumes_and_no_succeeded_task_runs_twice(
    tmp_path: Path, state_url: str
) -> None:
    count = "echo x >> {0}.count"
    write_dag(
        tmp_path,
        [
            bash("a", count.format("a")),
            bash("b", count.format("b"), "a"),
            bash(
                "c",
                count.format("c") + '; [ "$MFLOW_ATTEMPT" -gt 1 ] || '
                "{ echo $$ > c.pid; touch c.started; sleep 60; }",
                "b",
            ),
            bash("d", count.format("d"), "c"),
            bash("side", count.format("side")),
        ],
    )
    first = start(tmp_path, state_url)
    wait_for(tmp_path / "c.started")
    orphan = int((tmp_path / "c.pid").read_text())
    # What "had succeeded" means after a SIGKILL: recorded as SUCCESS in the store. A task that
    # ended in the last group commit's window before the kill is not, and runs again (at least
    # once, as with every scheduler); kill only once b's and side's SUCCESS are durable.
    deadline = time.monotonic() + 30
    while True:
        states = {t["task_id"]: t["state"] for t in status(tmp_path, state_url, "1")["tasks"]}
        done = states["b"] == states["side"] == "SUCCESS" and states["c"] == "RUNNING"
        assert done or time.monotonic() < deadline, states
        if done:
            break
        time.sleep(0.05)
    first.kill()
    first.wait()
    time.sleep(0.3)
    resumed = mflow(tmp_path, state_url, "--resume", "last")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # Taking over the run is an event like any other: the console and the master log say so.
    gone = f"run 1: owner gone (pid {first.pid} on {socket.gethostname()}"
    assert gone in resumed.stdout
    assert gone in (tmp_path / "logs" / "mflow.log").read_text()
    counts = {p.stem: len(p.read_text().split()) for p in tmp_path.glob("*.count")}
    assert counts == {"a": 1, "b": 1, "side": 1, "c": 2, "d": 1}
    assert not alive(orphan), "the task process of the killed run was left running"
    tree = status(tmp_path, state_url, "1")
    assert tree["run"]["status"] == "SUCCESS"
    attempts = {t["task_id"]: t["attempt"] for t in tree["tasks"]}
    assert attempts == {"a": 1, "b": 1, "c": 2, "d": 1, "side": 1}
    runs = json.loads(mflow(tmp_path, state_url, "runs", "--json").stdout)
    assert len(runs) == 1  # resumed in place, not a new run


def test_resume_of_a_failed_run_reruns_only_what_did_not_succeed(
    tmp_path: Path, state_url: str
) -> None:
    write_dag(
        tmp_path,
        [
            bash("good", "echo x >> good.count"),
            bash("flaky", "echo x >> flaky.count; [ -e fixed ]", "good"),
            bash("after", "echo x >> after.count", "flaky"),
        ],
    )
    assert mflow(tmp_path, state_url).returncode == 1
    assert status(tmp_path, state_url)["run"]["status"] == "FAILED"
    (tmp_path / "fixed").touch()
    result = mflow(tmp_path, state_url, "--resume", "1")
    assert result.returncode == 0, result.stderr
    counts = {p.stem: len(p.read_text().split()) for p in tmp_path.glob("*.count")}
    assert counts == {"good": 1, "flaky": 2, "after": 1}
    again = mflow(tmp_path, state_url, "--resume", "last")  # nothing left to do
    assert again.returncode == 0
    assert {p.stem: len(p.read_text().split()) for p in tmp_path.glob("*.count")} == counts


def test_resume_of_another_dags_run_is_refused(tmp_path: Path) -> None:
    write_dag(tmp_path, [bash("a", "true")], name="one")
    assert mflow(tmp_path, None).returncode == 0
    write_dag(tmp_path, [bash("a", "true")], name="two")
    result = mflow(tmp_path, None, "--resume", "1")
    assert result.returncode == 2
    assert "run 1 is of DAG 'one', not 'two'" in result.stderr


def test_eight_simultaneous_starts_run_exactly_once(tmp_path: Path, state_url: str) -> None:
    write_dag(tmp_path, [bash("only", "echo $$ >> ran; sleep 2")])
    if state_url.startswith("sqlite"):
        assert mflow(tmp_path, state_url, "db", "init").returncode == 0
    gate = tmp_path / "go"
    script = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.001)\n"
        "from mflow.cli import main\n"
        "sys.argv = ['mflow', '--quiet']\n"
        "main()\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=tmp_path,
            env=env_for(tmp_path, state_url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    time.sleep(1.5)  # let every interpreter start and wait at the gate
    gate.touch()
    codes = []
    errors = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        codes.append(proc.returncode)
        errors.append(err)
    assert sorted(codes) == [0] + [3] * 7, errors
    assert len((tmp_path / "ran").read_text().split()) == 1
    assert all("already running" in e for e, c in zip(errors, codes, strict=True) if c == 3)


def test_connection_named_mflow_in_the_datasources_is_the_store(tmp_path: Path) -> None:
    store = tmp_path / "from-datasources.db"
    (tmp_path / "oracle.json").write_text(
        json.dumps({"connections": [{"name": "mflow", "url": "sqlite:///from-datasources.db"}]})
    )
    write_dag(tmp_path, [bash("a", "true")])
    assert mflow(tmp_path, None).returncode == 0
    assert store.exists()
    assert not (tmp_path / "home" / "state.db").exists()
    assert status(tmp_path, None)["run"]["status"] == "SUCCESS"


def test_unreachable_store_exits_3_and_masks_the_password(tmp_path: Path) -> None:
    write_dag(tmp_path, [bash("a", "touch a.ran")])
    url = "postgresql+psycopg://someone:hunter2secret@127.0.0.1:1/nowhere"
    result = mflow(tmp_path, None, "--state", url)
    assert result.returncode == 3
    assert "hunter2secret" not in result.stdout + result.stderr
    assert "someone:***@127.0.0.1:1" in result.stderr
    assert not (tmp_path / "a.ran").exists()


def test_status_output_is_the_same_on_every_backend(tmp_path: Path, state_url: str) -> None:
    write_dag(tmp_path, [bash("a", "true"), bash("b", "exit 1", "a"), bash("c", "true", "b")])
    assert mflow(tmp_path, state_url).returncode == 1
    tree = status(tmp_path, state_url)
    volatile = {
        "started_at",
        "ended_at",
        "heartbeat_at",
        "pid",
        "host",
        "log_path",
        "log_directory",
        "taskfile",
    }

    def stable(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in volatile}

    assert stable(tree["run"]) == {
        "id": 1,
        "dag": "nightly",
        "status": "FAILED",
        "parent_run_id": None,
        "parent_task_id": None,
        "note": None,
    }
    assert sorted(map(stable, tree["tasks"]), key=lambda t: t["task_id"]) == [
        {
            "run_id": 1,
            "task_id": "a",
            "state": "SUCCESS",
            "attempt": 1,
            "exit_code": 0,
            "reason": None,
            "children": [],
        },
        {
            "run_id": 1,
            "task_id": "b",
            "state": "FAILED",
            "attempt": 1,
            "exit_code": 1,
            "reason": "exit code 1",
            "children": [],
        },
        {
            "run_id": 1,
            "task_id": "c",
            "state": "UPSTREAM_FAILED",
            "attempt": 0,
            "exit_code": None,
            "reason": "upstream 'b' failed",
            "children": [],
        },
    ]
