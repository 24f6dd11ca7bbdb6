"""The Celery executor and `mflow worker` (issue 18, SPEC §10) against real Redis and RabbitMQ.

Each test starts real `mflow worker` processes and a real coordinating `mflow` run, on a queue
of its own (so tests and leftovers never share messages): a 50-task DAG over two workers, each
task once and after its dependencies; retries; a timeout enforced on the worker; a worker
SIGKILLed mid-task and a fresh one taking over; SIGTERM to the coordinator stopping remote
tasks; logs read from the coordinator; an SQL task run with the worker's datasources.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import service_unavailable
from support import bash, wait_for

pytest.importorskip("celery")

BROKERS = {
    "redis": ("redis://127.0.0.1:6379/7", 6379),
    "rabbitmq": ("amqp://guest:guest@127.0.0.1:5672//", 5672),
}


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@dataclass
class Cluster:
    """A coordinator's directory, its config.json and the workers started for it."""

    path: Path
    broker: str
    queue: str
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def config(self, **extra: Any) -> None:
        doc = {"executor": "celery", "broker": self.broker, "max_process_concurrency": 8}
        (self.path / "config.json").write_text(json.dumps({**doc, **extra}))

    def dag(self, name: str, tasks: list[dict[str, Any]]) -> Path:
        for task in tasks:
            task.setdefault("queue", self.queue)
        path = self.path / f"{name}.json"
        path.write_text(json.dumps({"name": name, "tasks": tasks}))
        return path

    def worker(self, tag: str, concurrency: int = 2, **env: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mflow",
                "worker",
                "--queues",
                self.queue,
                "-c",
                str(concurrency),
                "--name",
                f"{tag}-{self.queue}",
            ],
            cwd=self.path,
            env={**self.env, "WORKER_TAG": tag, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.workers.append(process)
        return process

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mflow", *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "mflow", *args],
            cwd=self.path,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def states(self, run: str = "last") -> dict[str, dict[str, Any]]:
        done = self.run("status", run, "--json")
        assert done.returncode == 0, done.stderr
        return {t["task_id"]: t for t in json.loads(done.stdout)["tasks"]}


@pytest.fixture(params=list(BROKERS))
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, mflow_env: dict[str, str]
) -> Iterator[Cluster]:
    broker, port = BROKERS[request.param]
    if not _answers(port):
        service_unavailable(f"{request.param} is not answering on 127.0.0.1:{port}")
    env = {**mflow_env, "MFLOW_STATE": f"sqlite:///{tmp_path / 'state.db'}"}
    made = Cluster(tmp_path, broker, f"t{uuid.uuid4().hex[:10]}", env)
    made.config()
    yield made
    for worker in made.workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
    for worker in made.workers:
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def pids_of(pattern: str) -> list[str]:
    done = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return done.stdout.split()


def test_fifty_tasks_over_two_workers_each_once_in_order(cluster: Cluster) -> None:
    marks = cluster.path / "marks"
    marks.mkdir()
    tasks = []
    for i in range(50):
        deps = [f"t{i - 10}", f"t{i - 10 - i % 3}"] if i >= 12 else []
        check = " && ".join(f"test -e {marks}/{d}" for d in dict.fromkeys(deps)) or "true"
        tasks.append(
            bash(
                f"t{i}",
                f"{check} && echo $WORKER_TAG >> {marks}/t{i} && echo ran t{i} on $WORKER_TAG",
                *dict.fromkeys(deps),
            )
        )
    cluster.dag("fifty", tasks)
    cluster.worker("w1")
    cluster.worker("w2")
    done = cluster.run("--taskfile", "fifty.json")
    assert done.returncode == 0, done.stdout + done.stderr
    counts = {p.name: p.read_text().splitlines() for p in marks.iterdir()}
    assert sorted(counts) == sorted(f"t{i}" for i in range(50))
    assert all(len(lines) == 1 for lines in counts.values()), counts  # each ran once
    assert {line for lines in counts.values() for line in lines} == {"w1", "w2"}
    states = cluster.states()
    assert {t["state"] for t in states.values()} == {"SUCCESS"}
    # The logs are read from the coordinator: header by the coordinator, output by a worker.
    log = cluster.run("logs", "last", "t7")
    assert log.returncode == 0 and "ran t7 on w" in log.stdout and "attempt 1/1" in log.stdout


def test_a_failing_task_is_retried_then_failed(cluster: Cluster) -> None:
    cluster.dag(
        "flaky",
        [bash("f", "echo try $MFLOW_ATTEMPT; exit 4", retries=2, retry_delay=0.2)],
    )
    cluster.worker("w1")
    done = cluster.run("--taskfile", "flaky.json")
    assert done.returncode == 1, done.stdout
    task = cluster.states()["f"]
    assert task["state"] == "FAILED" and task["attempt"] == 3 and task["exit_code"] == 4
    out = cluster.run("logs", "last", "f").stdout
    assert [line for line in out.splitlines() if line.startswith("try")] == [
        "try 1",
        "try 2",
        "try 3",
    ]


def test_the_timeout_is_enforced_on_the_worker(cluster: Cluster) -> None:
    tag = uuid.uuid4().hex[:8]
    cluster.dag("slow", [bash("s", f"sleep 60; true # {tag}", timeout=1)])
    cluster.worker("w1")
    began = time.monotonic()
    done = cluster.run("--taskfile", "slow.json")
    assert done.returncode == 1, done.stdout
    assert time.monotonic() - began < 30
    task = cluster.states()["s"]
    assert task["state"] == "FAILED" and "timed out after 1" in task["reason"]
    wait_for(lambda: not pids_of(f"sleep 60; true # {tag}"), "the task's process to be gone")


def test_sigterm_to_the_coordinator_stops_remote_tasks(cluster: Cluster) -> None:
    tag = uuid.uuid4().hex[:8]
    cluster.dag("long", [bash(f"l{i}", f"sleep 120; true # {tag}") for i in range(3)])
    cluster.worker("w1", concurrency=3)
    coordinator = cluster.start("--taskfile", "long.json")
    wait_for(lambda: len(pids_of(f"sleep 120; true # {tag}")) == 3, "three remote tasks to run")
    coordinator.send_signal(signal.SIGTERM)
    out, _ = coordinator.communicate(timeout=60)
    assert coordinator.returncode == 143, out
    wait_for(lambda: not pids_of(f"sleep 120; true # {tag}"), "the remote tasks to be gone", 20)
    assert {t["state"] for t in cluster.states().values()} == {"CANCELLED"}


def test_a_worker_killed_mid_task_loses_nothing(cluster: Cluster) -> None:
    tag = uuid.uuid4().hex[:8]
    cluster.config(visibility_timeout=6)  # Redis: a dead worker's message returns after 6 s
    cluster.dag(
        "lost",
        [
            bash(
                "s",
                f"echo try $MFLOW_ATTEMPT; sleep 3; echo done # {tag}",
                retries=1,
                retry_delay=0.2,
            )
        ],
    )
    first = cluster.worker("w1", concurrency=1)
    coordinator = cluster.start("--taskfile", "lost.json")
    wait_for(lambda: pids_of(f"echo done # {tag}"), "the task to start on the first worker")
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool: the machine went away
    wait_for(lambda: not pids_of(f"echo done # {tag}"), "its task to be killed with it", 10)
    cluster.worker("w2", concurrency=1)
    out, _ = coordinator.communicate(timeout=90)
    assert coordinator.returncode == 0, out
    task = cluster.states()["s"]
    assert task["state"] == "SUCCESS" and task["attempt"] == 2
    log = cluster.run("logs", "last", "s").stdout
    assert "worker lost" in log and log.count("\ndone\n") == 1


def test_an_sql_task_runs_with_the_workers_datasources(cluster: Cluster) -> None:
    def datasources(path: Path, db: Path) -> Path:
        path.write_text(
            json.dumps({"connections": [{"name": "warehouse", "url": f"sqlite:///{db}"}]})
        )
        return path

    datasources(cluster.path / "oracle.json", cluster.path / "coordinator.db")
    worker_side = cluster.path / "worker-side"
    worker_side.mkdir()
    datasources(worker_side / "oracle.json", worker_side / "worker.db")
    cluster.dag(
        "sql",
        [
            {
                "id": "q",
                "type": "sql",
                "db": "warehouse",
                "command": "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (42)",
            }
        ],
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mflow",
            "worker",
            "--queues",
            cluster.queue,
            "-c",
            "1",
            "--config",
            str(cluster.path / "config.json"),
            "--datasources",
            str(worker_side / "oracle.json"),
        ],
        cwd=worker_side,
        env=cluster.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cluster.workers.append(process)
    done = cluster.run("--taskfile", "sql.json")
    assert done.returncode == 0, done.stdout + done.stderr
    import sqlite3

    with sqlite3.connect(worker_side / "worker.db") as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]
    assert (
        not (cluster.path / "coordinator.db").exists()
        or not sqlite3.connect(cluster.path / "coordinator.db")
        .execute("SELECT name FROM sqlite_master WHERE name='t'")
        .fetchall()
    )


def test_a_celery_config_without_broker_names_the_field(
    tmp_path: Path, mflow_env: dict[str, str]
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"executor": "celery"}))
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": [bash("a", "true")]}))
    for args in ([], ["worker"]):
        done = subprocess.run(
            [sys.executable, "-m", "mflow", *args],
            cwd=tmp_path,
            env=mflow_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (args, done)
        assert "config.json $: missing required field 'broker'" in done.stderr
