"""Child runs (`type: mflow`): linked to their parent, nested in `mflow status`, failing and
cancelling with their parent, resumed instead of restarted, three levels deep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from support import alive, bash


def env_for(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFLOW_")}
    env["MFLOW_HOME"] = str(tmp_path / "home")
    return env


def mflow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mflow", *args],
        cwd=tmp_path,
        env=env_for(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )


def dag(path: Path, *tasks: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"tasks": list(tasks)}))
    return path


def child(task_id: str, taskfile: str, *depends: str) -> dict[str, Any]:
    return {"id": task_id, "type": "mflow", "taskfile": taskfile, "depends": list(depends)}


def status(tmp_path: Path, run_id: int) -> dict[str, Any]:
    result = mflow(tmp_path, "status", str(run_id), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def states(tree: dict[str, Any]) -> dict[str, str]:
    return {t["task_id"]: t["state"] for t in tree["tasks"]}


def children_of(tree: dict[str, Any], task: str) -> list[dict[str, Any]]:
    return next(t["children"] for t in tree["tasks"] if t["task_id"] == task)


def test_parent_with_two_children_shows_them_nested(tmp_path: Path) -> None:
    (tmp_path / "kids").mkdir()
    dag(tmp_path / "kids" / "child_a.json", bash("a1", "echo a1"), bash("a2", "echo a2", "a1"))
    dag(tmp_path / "kids" / "child_b.json", bash("b1", "echo b1 $MFLOW_PARENT_TASK_ID"))
    dag(
        tmp_path / "tasks.json",
        child("run_a", "kids/child_a.json"),
        child("run_b", "kids/child_b.json"),
        bash("after", "echo both done", "run_a", "run_b"),
    )
    result = mflow(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    tree = status(tmp_path, 1)
    assert states(tree) == {"run_a": "SUCCESS", "run_b": "SUCCESS", "after": "SUCCESS"}
    (kid_a,) = children_of(tree, "run_a")
    assert kid_a["run"]["dag"] == "child_a"
    assert kid_a["run"]["parent_run_id"] == 1 and kid_a["run"]["parent_task_id"] == "run_a"
    assert states(kid_a) == {"a1": "SUCCESS", "a2": "SUCCESS"}
    (kid_b,) = children_of(tree, "run_b")
    b1_log = next(t["log_path"] for t in kid_b["tasks"] if t["task_id"] == "b1")
    assert Path(b1_log).parent == tmp_path / "logs"  # under the parent's log directory
    assert "b1 run_b" in Path(b1_log).read_text()
    plain = mflow(tmp_path, "status", "1").stdout
    assert "run 1 tasks SUCCESS" in plain
    assert "parent run 1 task run_a" in plain


def test_three_levels_deep_with_parent_ids_in_the_environment(tmp_path: Path) -> None:
    dag(
        tmp_path / "level3.json",
        bash("leaf", "echo $MFLOW_PARENT_RUN_ID:$MFLOW_PARENT_TASK_ID > leaf.parent"),
    )
    dag(tmp_path / "level2.json", child("down", "level3.json"))
    dag(tmp_path / "tasks.json", child("top", "level2.json"))
    result = mflow(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    tree = status(tmp_path, 1)
    (middle,) = children_of(tree, "top")
    (bottom,) = children_of(middle, "down")
    assert states(bottom) == {"leaf": "SUCCESS"}
    middle_id = middle["run"]["id"]
    assert (tmp_path / "leaf.parent").read_text().strip() == f"{middle_id}:down"


def test_failed_child_fails_the_parent_task(tmp_path: Path) -> None:
    dag(tmp_path / "kid.json", bash("ok", "true"), bash("bad", "exit 5", "ok"))
    dag(tmp_path / "tasks.json", child("kid", "kid.json"), bash("after", "true", "kid"))
    result = mflow(tmp_path)
    assert result.returncode == 1
    tree = status(tmp_path, 1)
    assert states(tree) == {"kid": "FAILED", "after": "UPSTREAM_FAILED"}
    (kid,) = children_of(tree, "kid")
    assert kid["run"]["status"] == "FAILED"
    assert states(kid) == {"ok": "SUCCESS", "bad": "FAILED"}


def test_cancelling_the_parent_cancels_the_whole_child_tree(tmp_path: Path) -> None:
    dag(tmp_path / "level3.json", bash("leaf", "echo $$ > leaf.pid; sleep 60"))
    dag(tmp_path / "level2.json", child("down", "level3.json"))
    dag(tmp_path / "tasks.json", child("top", "level2.json"), bash("next", "true", "top"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mflow"],
        cwd=tmp_path,
        env=env_for(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not (tmp_path / "leaf.pid").exists():
        assert time.monotonic() < deadline, "the grandchild task never started"
        time.sleep(0.05)
    leaf = int((tmp_path / "leaf.pid").read_text())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert not alive(leaf)
    runs = json.loads(mflow(tmp_path, "runs", "--json").stdout)
    assert {r["dag"]: r["status"] for r in runs} == {
        "tasks": "CANCELLED",
        "level2": "CANCELLED",
        "level3": "CANCELLED",
    }


def test_resuming_the_parent_resumes_the_failed_child_run(tmp_path: Path) -> None:
    dag(
        tmp_path / "kid.json",
        bash("first", "echo x >> first.count"),
        bash("second", "echo x >> second.count; [ -e fixed ]", "first"),
    )
    dag(tmp_path / "tasks.json", child("kid", "kid.json"))
    assert mflow(tmp_path).returncode == 1
    (tmp_path / "fixed").touch()
    result = mflow(tmp_path, "--resume", "last")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len((tmp_path / "first.count").read_text().split()) == 1
    assert len((tmp_path / "second.count").read_text().split()) == 2
    tree = status(tmp_path, 1)
    kids = children_of(tree, "kid")
    assert len(kids) == 1  # the same child run, resumed
    assert kids[0]["run"]["status"] == "SUCCESS"
    runs = json.loads(mflow(tmp_path, "runs", "--json").stdout)
    assert len(runs) == 2


def test_two_tasks_of_a_parent_run_the_same_child_dag_side_by_side(tmp_path: Path) -> None:
    # Each child waits until both have started: they can only finish if they overlap.
    dag(
        tmp_path / "child.json",
        bash(
            "arrive",
            "touch arrived.$MFLOW_PARENT_TASK_ID; "
            "for i in $(seq 200); do [ $(ls arrived.* | wc -l) -ge 2 ] && exit 0; sleep 0.05; "
            "done; exit 1",
        ),
    )
    dag(tmp_path / "tasks.json", child("one", "child.json"), child("two", "child.json"))
    result = mflow(tmp_path, "-j", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    tree = status(tmp_path, 1)
    assert states(tree) == {"one": "SUCCESS", "two": "SUCCESS"}
    assert [
        kid["run"]["parent_task_id"] for t in ("one", "two") for kid in children_of(tree, t)
    ] == ["one", "two"]
