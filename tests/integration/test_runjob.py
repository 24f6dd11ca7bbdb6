"""`mflow runjob` for real (SPEC §6), on every backend: many claimers never take a partition
twice, catch-up in dataid order, RESUBMIT, a SIGKILLed claimer's partition recovered, the
variables a task sees, runjob as a DAG task and as a scheduled job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support import STATE_BACKENDS, alive, wait_for

PARTITIONS = int(os.environ.get("MFLOW_TEST_PARTITIONS", "500"))
CLAIMERS = 16


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


def mflow(tmp_path: Path, state_url: str, *args: str, code: int = 0) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mflow", *args],
        cwd=tmp_path,
        env=env_for(tmp_path, state_url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout


def setup_job(tmp_path: Path, state_url: str, command: str, **doc: Any) -> None:
    mflow(tmp_path, state_url, "datasets", "add", "sales", '{"path": "/data/sales/${dataid}"}')
    mflow(tmp_path, state_url, "datasets", "add", "report", '{"table": "report_${dataid}"}')
    job = {"type": "bash", "command": command, "inputs": ["sales"], "output": "report", **doc}
    mflow(tmp_path, state_url, "jobs", "add", "mkreport", json.dumps(job))


def ready(tmp_path: Path, state_url: str, *dataids: str) -> None:
    from mflow.state import StoreLocation, open_store
    from mflow.state.base import Partition
    from mflow.states import PartitionStatus

    store = open_store(StoreLocation(state_url))
    try:
        for dataid in dataids:
            store.set_partition(Partition("sales", dataid, PartitionStatus.READY))
    finally:
        store.close()


def statuses(tmp_path: Path, state_url: str) -> dict[str, str]:
    rows = json.loads(mflow(tmp_path, state_url, "data", "list", "report", "--json"))
    return {r["dataid"]: r["status"] for r in rows}


def test_many_concurrent_claimers_produce_every_partition_exactly_once(
    tmp_path: Path, state_url: str
) -> None:
    setup_job(tmp_path, state_url, "echo $$ >> done/$MFLOW_DATAID")
    (tmp_path / "done").mkdir()
    dataids = [f"d{i:04d}" for i in range(PARTITIONS)]
    ready(tmp_path, state_url, *dataids)
    claimers = [
        subprocess.Popen(
            [sys.executable, "-m", "mflow", "runjob", "mkreport", "--all", "-q"],
            cwd=tmp_path,
            env=env_for(tmp_path, state_url),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(CLAIMERS)
    ]
    for claimer in claimers:
        _, err = claimer.communicate(timeout=900)
        assert claimer.returncode == 0, err
    marks = {p.name: p.read_text().split() for p in (tmp_path / "done").iterdir()}
    assert sorted(marks) == dataids
    assert all(len(lines) == 1 for lines in marks.values())  # each produced once
    assert set(statuses(tmp_path, state_url).values()) == {"READY"}


def test_catch_up_after_an_outage_goes_oldest_first_and_resubmit_runs_again(
    tmp_path: Path, state_url: str
) -> None:
    setup_job(
        tmp_path,
        state_url,
        'echo "$MFLOW_DATAID $SALES_PATH $REPORT_TABLE" >> order.txt',
    )
    assert mflow(tmp_path, state_url, "runjob", "mkreport") == "no data ready\n"
    ready(tmp_path, state_url, "2026-11-24", "2026-11-22", "2026-11-23")  # three days at once
    out = mflow(tmp_path, state_url, "runjob", "mkreport", "--all", "-q")
    assert [line.split()[1] for line in out.splitlines() if line.startswith("report ")] == [
        "2026-11-22",
        "2026-11-23",
        "2026-11-24",
    ]
    assert (tmp_path / "order.txt").read_text().splitlines() == [
        f"{d} /data/sales/{d} report_{d}" for d in ("2026-11-22", "2026-11-23", "2026-11-24")
    ]
    mflow(tmp_path, state_url, "data", "reset", "report", "2026-11-23")
    mflow(tmp_path, state_url, "runjob", "mkreport", "--all", "-q")
    assert (tmp_path / "order.txt").read_text().splitlines()[-1].startswith("2026-11-23 ")
    assert set(statuses(tmp_path, state_url).values()) == {"READY"}


def test_a_failed_run_marks_the_partition_failed_and_it_is_not_claimed_again(
    tmp_path: Path, state_url: str
) -> None:
    setup_job(tmp_path, state_url, '[ "$MFLOW_DATAID" != bad ]')
    ready(tmp_path, state_url, "bad", "good")
    mflow(tmp_path, state_url, "runjob", "mkreport", "--all", "-q", code=1)
    assert statuses(tmp_path, state_url) == {"bad": "FAILED", "good": "READY"}
    assert mflow(tmp_path, state_url, "runjob", "mkreport") == "no data ready\n"


def test_a_sigkilled_claimers_partition_is_produced_by_the_next_claimer(
    tmp_path: Path, state_url: str
) -> None:
    setup_job(
        tmp_path, state_url, "echo $$ > $MFLOW_DATAID.pid; echo x >> $MFLOW_DATAID.count; sleep 300"
    )
    ready(tmp_path, state_url, "d1")
    first = subprocess.Popen(
        [sys.executable, "-m", "mflow", "runjob", "mkreport", "-q"],
        cwd=tmp_path,
        env=env_for(tmp_path, state_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: (tmp_path / "d1.pid").exists(), "the first claim's task", timeout=60)
    task = int((tmp_path / "d1.pid").read_text())
    first.send_signal(signal.SIGKILL)
    first.wait()
    os.killpg(task, signal.SIGKILL)  # (its task leads its own session)
    assert statuses(tmp_path, state_url) == {"d1": "RUNNING"}
    (tmp_path / "d1.pid").unlink()
    quick = {"type": "bash", "command": "echo x >> $MFLOW_DATAID.count"}
    mflow(
        tmp_path,
        state_url,
        "jobs",
        "update",
        "mkreport",
        json.dumps({**quick, "inputs": ["sales"], "output": "report"}),
    )
    mflow(tmp_path, state_url, "runjob", "mkreport", "-q")
    assert statuses(tmp_path, state_url) == {"d1": "READY"}
    assert (tmp_path / "d1.count").read_text().split() == ["x", "x"]
    assert not alive(task)


def test_runjob_as_a_dag_task_nests_its_runs_under_the_task(tmp_path: Path, state_url: str) -> None:
    setup_job(tmp_path, state_url, "true")
    ready(tmp_path, state_url, "d1", "d2")
    (tmp_path / "dag.json").write_text(
        json.dumps(
            {
                "name": "daily",
                "tasks": [{"id": "produce", "type": "runjob", "job": "mkreport", "all": True}],
            }
        )
    )
    mflow(tmp_path, state_url, "run", "dag.json", "-q")
    tree = json.loads(mflow(tmp_path, state_url, "status", "--json"))
    (task,) = tree["tasks"]
    assert [c["run"]["dag"] for c in task["children"]] == ["mkreport", "mkreport"]
    assert statuses(tmp_path, state_url) == {"d1": "READY", "d2": "READY"}


def test_a_scheduled_partition_aware_job_fires_runjob(tmp_path: Path, state_url: str) -> None:
    setup_job(tmp_path, state_url, "true", frequency=1)
    ready(tmp_path, state_url, "d1")
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "mflow", "scheduler"],
        cwd=tmp_path,
        env=env_for(tmp_path, state_url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: statuses(tmp_path, state_url) == {"d1": "READY"}, "d1 produced", timeout=60
        )
        wait_for(
            lambda: any(
                r["reason"] == "no data ready"
                for r in json.loads(
                    mflow(tmp_path, state_url, "jobs", "history", "mkreport", "--json")
                )
            ),
            "a slot with nothing ready",
            timeout=60,
        )
    finally:
        scheduler.terminate()
        assert scheduler.wait(timeout=60) == 0
