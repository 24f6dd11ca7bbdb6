"""Run control from the `mflow` command (SPEC §11) on every store backend: `mflow stop` on this
host and from another one, `--resume --from`, resuming an edited DAG, a resume with nothing
left to do, `mflow dags`, `mflow prune`, and task logs of two stores in one directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support import STATE_BACKENDS, alive, bash, wait_for

UNSHARE = shutil.which("unshare")


@pytest.fixture(params=STATE_BACKENDS)
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(request.getfixturevalue("zk_url"))


def env_for(tmp_path: Path, state_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFLOW_")}
    env.update(MFLOW_HOME=str(tmp_path / "home"), MFLOW_STATE=state_url)
    return env


def mflow(tmp_path: Path, state_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mflow", *args],
        cwd=tmp_path,
        env=env_for(tmp_path, state_url),
        capture_output=True,
        text=True,
        timeout=120,
    )


def start(tmp_path: Path, state_url: str, *args: str) -> subprocess.Popen[str]:
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


def status(tmp_path: Path, state_url: str, *args: str) -> dict[str, Any]:
    result = mflow(tmp_path, state_url, "status", *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def states(tmp_path: Path, state_url: str, *args: str) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in status(tmp_path, state_url, *args)["tasks"]}


def counts(tmp_path: Path) -> dict[str, int]:
    return {p.stem: len(p.read_text().split()) for p in tmp_path.glob("*.count")}


def counting(task: str, *depends: str, extra: str = "") -> dict[str, Any]:
    return bash(task, f"echo x >> {task}.count{extra}", *depends)


def sleeper_dag(tmp_path: Path) -> None:
    # A parent whose task is a child run: stopping the parent stops the child's task too.
    (tmp_path / "child.json").write_text(
        json.dumps({"name": "kid", "tasks": [bash("inner", "echo $$ > inner.pid; exec sleep 300")]})
    )
    write_dag(
        tmp_path,
        [
            bash("outer", "echo $$ > outer.pid; exec sleep 300"),
            {"id": "child", "type": "mflow", "taskfile": "child.json"},
        ],
    )


def test_stop_on_this_host_cancels_the_run_its_tasks_and_its_child_runs(
    tmp_path: Path, state_url: str
) -> None:
    sleeper_dag(tmp_path)
    run = start(tmp_path, state_url)
    wait_for(
        lambda: (tmp_path / "outer.pid").exists() and (tmp_path / "inner.pid").exists(), "tasks"
    )
    pids = [int((tmp_path / f"{t}.pid").read_text()) for t in ("outer", "inner")]
    stopped = mflow(tmp_path, state_url, "stop", "last")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == "run 1 nightly: CANCELLED\n"
    assert run.wait(timeout=30) == 143
    tree = status(tmp_path, state_url, "1")
    assert tree["run"]["status"] == "CANCELLED"
    assert {t["task_id"]: t["state"] for t in tree["tasks"]} == {
        "outer": "CANCELLED",
        "child": "CANCELLED",
    }
    (child,) = tree["tasks"][[t["task_id"] for t in tree["tasks"]].index("child")]["children"]
    assert child["run"]["status"] == "CANCELLED"
    assert not any(alive(pid) for pid in pids)
    assert (
        "run=1 SIGTERM received: cancelling 2 running tasks"
        in (tmp_path / "logs" / "mflow.log").read_text()
    )


@pytest.mark.skipif(UNSHARE is None or os.geteuid() != 0, reason="needs root and unshare")
def test_stop_from_another_host_goes_through_the_store(tmp_path: Path, state_url: str) -> None:
    write_dag(tmp_path, [bash("long", "echo $$ > long.pid; exec sleep 300")])
    run = start(tmp_path, state_url)
    wait_for(lambda: (tmp_path / "long.pid").exists(), "the task")
    # `mflow stop` on a host of another name (its own UTS namespace): it cannot signal the
    # run's mflow, so the request goes through the store to the run's store writer.
    mflow_argv = " ".join([sys.executable, "-m", "mflow", "stop", "1", "--wait", "30"])
    stopped = subprocess.run(
        [UNSHARE, "-u", "sh", "-c", f"hostname other-host && exec {mflow_argv}"],
        cwd=tmp_path,
        env=env_for(tmp_path, state_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == "run 1 nightly: CANCELLED\n"
    assert run.wait(timeout=30) == 143
    assert not alive(int((tmp_path / "long.pid").read_text()))
    log = (tmp_path / "logs" / "mflow.log").read_text()
    assert "stop requested by" in log and "@other-host pid " in log


def test_stop_of_a_finished_run_is_one_line_exit_2(tmp_path: Path, state_url: str) -> None:
    write_dag(tmp_path, [bash("a", "true")])
    assert mflow(tmp_path, state_url).returncode == 0
    stopped = mflow(tmp_path, state_url, "stop", "1")
    assert stopped.returncode == 2
    assert stopped.stderr == "run 1 of DAG 'nightly' is not running: it is SUCCESS\n"


def test_resume_from_reruns_the_task_and_its_downstream_only(
    tmp_path: Path, state_url: str
) -> None:
    write_dag(
        tmp_path,
        [counting("a"), counting("b", "a"), counting("c", "b"), counting("side")],
    )
    assert mflow(tmp_path, state_url).returncode == 0
    again = mflow(tmp_path, state_url, "--resume", "last", "--from", "b")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "--from b: 2 tasks again" in again.stdout
    assert counts(tmp_path) == {"a": 1, "b": 2, "c": 2, "side": 1}
    attempts = {t["task_id"]: t["attempt"] for t in status(tmp_path, state_url)["tasks"]}
    assert attempts == {"a": 1, "b": 2, "c": 2, "side": 1}
    wrong = mflow(tmp_path, state_url, "--from", "b")
    assert wrong.returncode == 2 and "--resume" in wrong.stderr


def test_resume_of_an_edited_dag_runs_added_and_changed_tasks_and_drops_removed_ones(
    tmp_path: Path, state_url: str
) -> None:
    write_dag(tmp_path, [counting("a"), counting("b", "a"), bash("broken", "exit 1", "a")])
    assert mflow(tmp_path, state_url).returncode == 1
    # Edited: b's command changed, the failed task renamed (removed + added), d added.
    write_dag(
        tmp_path,
        [
            counting("a"),
            counting("b", "a", extra="; true"),
            bash("fixed", "true", "a"),
            counting("d", "fixed"),
        ],
    )
    plan = mflow(tmp_path, state_url, "--resume", "last", "--dry-run")
    assert "the DAG changed since run 1: added fixed, d; removed broken; changed b" in plan.stdout
    resumed = mflow(tmp_path, state_url, "--resume", "last")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "the DAG changed since run 1: added fixed, d; removed broken; changed b" in (
        resumed.stdout
    )
    assert counts(tmp_path) == {"a": 1, "b": 2, "d": 1}
    tree = status(tmp_path, state_url, "1")
    assert tree["run"]["status"] == "SUCCESS"
    assert {t["task_id"]: t["state"] for t in tree["tasks"]} == {
        "a": "SUCCESS",
        "b": "SUCCESS",
        "fixed": "SUCCESS",
        "d": "SUCCESS",
    }
    # Resumed again without an edit: nothing is left, and nothing changes.
    before = status(tmp_path, state_url, "1")["run"]
    unchanged = mflow(tmp_path, state_url, "--resume", "1")
    assert unchanged.returncode == 0
    assert unchanged.stdout.startswith("run 1: nothing left to do")
    assert status(tmp_path, state_url, "1")["run"] == before


def test_dags_and_prune(tmp_path: Path, state_url: str) -> None:
    write_dag(tmp_path, [bash("a", "echo one")], name="first")
    assert mflow(tmp_path, state_url).returncode == 0
    write_dag(tmp_path, [bash("a", "exit 1")], name="second")
    assert mflow(tmp_path, state_url).returncode == 1
    listed = json.loads(mflow(tmp_path, state_url, "dags", "--json").stdout)
    assert [(d["dag"], d["runs"], d["last_run"]["status"]) for d in listed] == [
        ("first", 1, "SUCCESS"),
        ("second", 1, "FAILED"),
    ]
    table = mflow(tmp_path, state_url, "dags").stdout.splitlines()
    assert table[0].split() == ["DAG", "RUNS", "LAST", "RUN", "STATE", "STARTED", "DURATION"]
    logs = sorted((tmp_path / "logs").glob("master_*"))
    assert len(logs) == 2
    time.sleep(1.1)
    dry = mflow(tmp_path, state_url, "prune", "--older-than", "1s", "--dag", "first", "--dry-run")
    assert dry.stdout.startswith("would delete 1 run and 1 task log"), dry.stdout
    assert all(p.exists() for p in logs)
    done = mflow(tmp_path, state_url, "prune", "--older-than", "1s", "--dag", "first")
    assert done.stdout.startswith("deleted 1 run and 1 task log"), done.stdout
    assert [d["dag"] for d in json.loads(mflow(tmp_path, state_url, "dags", "--json").stdout)] == [
        "second"
    ]
    assert [p.exists() for p in logs] == [False, True]
    bad = mflow(tmp_path, state_url, "prune", "--older-than", "soon")
    assert bad.returncode == 2 and "--older-than: 'soon' is not an age" in bad.stderr


def test_prune_never_touches_an_active_run(tmp_path: Path, state_url: str) -> None:
    write_dag(tmp_path, [bash("long", "echo $$ > long.pid; exec sleep 300")])
    run = start(tmp_path, state_url)
    wait_for(lambda: (tmp_path / "long.pid").exists(), "the task")
    time.sleep(1.1)
    pruned = mflow(tmp_path, state_url, "prune", "--older-than", "1s")
    assert pruned.stdout.startswith("deleted 0 runs and 0 task logs")
    assert status(tmp_path, state_url, "1")["run"]["status"] == "RUNNING"
    run.terminate()
    assert run.wait(timeout=30) == 143


def test_task_logs_of_two_stores_in_one_directory_never_mix(tmp_path: Path) -> None:
    first = f"sqlite:///{tmp_path / 'one.db'}"
    second = f"sqlite:///{tmp_path / 'two.db'}"
    write_dag(tmp_path, [bash("a", "echo from-$MFLOW_STATE_NAME")])
    for url, name in ((first, "one"), (second, "two")):
        env = {**env_for(tmp_path, url), "MFLOW_STATE_NAME": name}
        done = subprocess.run(
            [sys.executable, "-m", "mflow"], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    logs = {p.name for p in (tmp_path / "logs").glob("master_*")}
    assert len(logs) == 2 and "master_1_task_a.log" in logs
    (other,) = logs - {"master_1_task_a.log"}
    assert other.endswith("-1_task_a.log") and len(other.split("-")[0]) == len("master_") + 8
    assert "from-one" in (tmp_path / "logs" / "master_1_task_a.log").read_text()
    assert "from-two" in (tmp_path / "logs" / other).read_text()
    shown = mflow(tmp_path, second, "logs", "1", "a")
    assert "from-two" in shown.stdout
