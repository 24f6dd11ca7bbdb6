"""`mflow scheduler` for real (SPEC §5): real scheduler processes on SQLite, PostgreSQL and
ZooKeeper firing 1-second jobs; leaders SIGKILLed and SIGSTOPped; every slot accounted for,
proved from the store (no slot twice, none missed with catchup all)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import STATE_BACKENDS, wait_for


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
    done = subprocess.run(
        [sys.executable, "-m", "mflow", *args],
        cwd=tmp_path,
        env=env_for(tmp_path, state_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def add_job(tmp_path: Path, state_url: str, name: str, **doc: Any) -> None:
    job = {"type": "bash", "command": f"echo $MFLOW_RUN_ID >> {name}.runs", **doc}
    mflow(tmp_path, state_url, "jobs", "add", name, json.dumps(job))


class Schedulers:
    def __init__(self, tmp_path: Path, state_url: str) -> None:
        self.tmp_path, self.state_url = tmp_path, state_url
        self.processes: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "mflow", "scheduler", "--name", name],
            cwd=self.tmp_path,
            env=env_for(self.tmp_path, self.state_url),
            stdout=(self.tmp_path / f"{name}.out").open("a"),
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes[name] = process
        return process

    def leader(self) -> str | None:
        found = json.loads(
            mflow(self.tmp_path, self.state_url, "cluster", "show-leader", "--json").stdout
        )
        if found is None:
            return None
        alive = {n for n, p in self.processes.items() if p.poll() is None}
        return found["name"] if found["name"] in alive else None

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def schedulers(tmp_path: Path, state_url: str) -> Iterator[Schedulers]:
    found = Schedulers(tmp_path, state_url)
    yield found
    found.stop_all()


def history(tmp_path: Path, state_url: str, job: str) -> list[dict[str, Any]]:
    out = mflow(tmp_path, state_url, "jobs", "history", job, "--limit", "1000", "--json").stdout
    return list(reversed(json.loads(out)))


def assert_every_slot_once(rows: list[dict[str, Any]], period: float) -> None:
    """Scheduled slots are unique (the store's key says so) and contiguous: none missed."""
    slots = [r["slot"] for r in rows]
    assert len(slots) == len(set(slots))
    for earlier, later in itertools.pairwise(slots):
        assert later - earlier == pytest.approx(period), rows


def test_a_scheduler_fires_each_slot_once_and_sigterm_exits_0(
    tmp_path: Path, state_url: str, schedulers: Schedulers
) -> None:
    add_job(tmp_path, state_url, "tick", frequency=1, catchup="all")
    first = schedulers.start("one")
    wait_for(lambda: len(history(tmp_path, state_url, "tick")) >= 4, "four slots", timeout=30)
    first.terminate()
    assert first.wait(timeout=30) == 0
    rows = [r for r in history(tmp_path, state_url, "tick") if r["outcome"] == "FIRED"]
    assert_every_slot_once(rows, 1.0)
    assert all(r["host"] for r in rows)
    runs = [int(x) for x in (tmp_path / "tick.runs").read_text().split()]
    assert len(runs) == len(set(runs)) >= 3
    assert "scheduler one leads (epoch" in (tmp_path / "one.out").read_text()
    status = json.loads(mflow(tmp_path, state_url, "cluster", "status", "--json").stdout)
    assert status["leader"] is None or status["leader"]["name"] != "one"


def test_catchup_latest_fires_the_last_missed_slot_and_records_the_others(
    tmp_path: Path, state_url: str, schedulers: Schedulers
) -> None:
    add_job(tmp_path, state_url, "latest", frequency=1)
    time.sleep(3.5)  # downtime: no scheduler
    schedulers.start("one")
    wait_for(
        lambda: any(r["outcome"] == "FIRED" for r in history(tmp_path, state_url, "latest")),
        "a fire",
        timeout=30,
    )
    rows = history(tmp_path, state_url, "latest")
    first_fired = next(i for i, r in enumerate(rows) if r["outcome"] == "FIRED")
    assert first_fired >= 2
    assert all(r["outcome"] == "SKIPPED" and r["reason"] == "missed" for r in rows[:first_fired])


def test_a_paused_jobs_slots_are_recorded_as_skipped(
    tmp_path: Path, state_url: str, schedulers: Schedulers
) -> None:
    add_job(tmp_path, state_url, "quiet", frequency=1)
    mflow(tmp_path, state_url, "jobs", "pause", "quiet")
    schedulers.start("one")
    wait_for(lambda: len(history(tmp_path, state_url, "quiet")) >= 2, "two slots", timeout=30)
    assert {(r["outcome"], r["reason"]) for r in history(tmp_path, state_url, "quiet")} == {
        ("SKIPPED", "paused")
    }
    assert not (tmp_path / "quiet.runs").exists()


def test_a_conflict_and_a_job_waiting_for_another_are_skipped_with_their_reason(
    tmp_path: Path, state_url: str, schedulers: Schedulers
) -> None:
    add_job(tmp_path, state_url, "full_load", frequency=1, command="sleep 30")
    add_job(tmp_path, state_url, "healing", frequency=1, conflicts_with=["full_load"])
    add_job(tmp_path, state_url, "after", frequency=1, after_success_of=["never_ran"])
    schedulers.start("one")
    wait_for(lambda: len(history(tmp_path, state_url, "after")) >= 2, "slots", timeout=30)
    wait_for(
        lambda: any(
            r["reason"] == "conflict: full_load" for r in history(tmp_path, state_url, "healing")
        ),
        "a conflict",
        timeout=30,
    )
    assert {r["reason"] for r in history(tmp_path, state_url, "after")} == {
        "waiting for: never_ran"
    }
    full = history(tmp_path, state_url, "full_load")
    assert any(r["reason"] == "max_active" for r in full)  # its one run is still going


def test_trigger_wait_exits_as_the_run(tmp_path: Path, state_url: str) -> None:
    add_job(tmp_path, state_url, "manual", command="exit 3")
    done = subprocess.run(
        [sys.executable, "-m", "mflow", "jobs", "trigger", "manual", "--wait"],
        cwd=tmp_path,
        env=env_for(tmp_path, state_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    run_id = int(done.stdout.strip())
    (row,) = history(tmp_path, state_url, "manual")
    assert (row["run_id"], row["state"], row["outcome"]) == (run_id, "FAILED", "FIRED")


def test_failover_after_the_leader_is_sigkilled_fires_every_slot_once(
    tmp_path: Path, state_url: str, schedulers: Schedulers
) -> None:
    add_job(tmp_path, state_url, "steady", frequency=1, catchup="all")
    for name in ("a", "b", "c"):
        schedulers.start(name)
    for _ in range(2):
        wait_for(lambda: schedulers.leader() is not None, "a leader", timeout=30)
        leader = schedulers.leader()
        assert leader is not None
        wait_for(lambda: len(history(tmp_path, state_url, "steady")) >= 2, "slots", timeout=30)
        schedulers.processes[leader].send_signal(signal.SIGKILL)
        schedulers.processes[leader].wait()
        before = len(history(tmp_path, state_url, "steady"))
        wait_for(
            lambda leader=leader, before=before: (
                schedulers.leader() not in (None, leader)
                and len(history(tmp_path, state_url, "steady")) > before + 1
            ),
            "a new leader firing",
            timeout=40,
        )
    rows = history(tmp_path, state_url, "steady")
    assert_every_slot_once(rows, 1.0)
    assert all(r["outcome"] == "FIRED" for r in rows)  # catchup all: nothing skipped
    assert len({r["host"] for r in rows}) == 1  # (one machine)


def test_a_leader_paused_through_a_takeover_fires_nothing_when_it_wakes(
    tmp_path: Path, state_url: str, schedulers: Schedulers
) -> None:
    add_job(tmp_path, state_url, "fenced", frequency=1, catchup="all")
    schedulers.start("a")
    wait_for(lambda: schedulers.leader() == "a", "a leads", timeout=30)
    schedulers.start("b")
    schedulers.processes["a"].send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: schedulers.leader() == "b", "b takes over", timeout=40)
        wait_for(lambda: len(history(tmp_path, state_url, "fenced")) >= 3, "b fires", timeout=30)
    finally:
        schedulers.processes["a"].send_signal(signal.SIGCONT)
    time.sleep(4)  # a wakes up with its old lease and epoch
    rows = history(tmp_path, state_url, "fenced")
    assert_every_slot_once([r for r in rows if r["outcome"] == "FIRED"], 1.0)
    out = (tmp_path / "a.out").read_text()
    assert "no longer the leader" in out or "fenced out" in out, out


def test_a_gsql_stream_is_kept_running_and_handed_over_with_leadership(
    tmp_path: Path, state_url: str, schedulers: Schedulers
) -> None:
    from tg_stub import TigerGraphStub, running

    with running(TigerGraphStub(hold=True)) as stub:
        (tmp_path / "oracle.json").write_text(
            json.dumps(
                {
                    "connections": [
                        {
                            "name": "tg",
                            "kind": "tigergraph",
                            "host": stub.host,
                            "port": stub.port,
                            "token": stub.token,
                        }
                    ]
                }
            )
        )
        job = {"type": "gsql_stream", "graph": "social", "job_name": "load_people", "db": "tg"}
        mflow(tmp_path, state_url, "jobs", "add", "feed", json.dumps(job))
        schedulers.start("a")
        wait_for(lambda: len(stub.requests) >= 1, "the stream's request", timeout=30)
        schedulers.start("b")
        time.sleep(1)
        first = json.loads(mflow(tmp_path, state_url, "runs", "--dag", "feed", "--json").stdout)
        assert [r["status"] for r in first] == ["RUNNING"]  # one stream, on the leader only
        schedulers.processes["a"].terminate()  # gives up leadership: its stream stops first
        assert schedulers.processes["a"].wait(timeout=60) == 0
        wait_for(lambda: len(stub.requests) >= 2, "b restarts the stream", timeout=40)
        runs = json.loads(mflow(tmp_path, state_url, "runs", "--dag", "feed", "--json").stdout)
        assert sorted(r["status"] for r in runs) == ["CANCELLED", "RUNNING"], runs
        stub.release.set()  # the load ends: the stream is started again after its backoff
        wait_for(lambda: len(stub.requests) >= 3, "a restart after the end", timeout=40)
