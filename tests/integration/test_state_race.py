"""Eight processes start the same DAG at the same instant: exactly one wins the run lock.

Real processes (not threads): each opens its own store, signals it is ready, waits for a
shared "go" file, calls `start_run`, reports, and stays alive until every process has
reported, so that the winner is a live holder (a dead one would rightly be taken over).
Run against stores that were never initialised too, so the schema creation races as well.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support import STATE_BACKENDS

from mflow.state import StoreLocation, open_store
from mflow.states import RunState

STARTERS = 8
REPO = Path(__file__).resolve().parents[2]

STARTER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path

    from mflow.errors import RunAlreadyActive
    from mflow.state import StoreLocation, open_store
    from mflow.state.base import NewRun, this_host

    url, workdir, index = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

    def wait_for(path):
        deadline = time.monotonic() + 60
        while not path.exists():
            if time.monotonic() > deadline:
                sys.exit(f"starter {index}: gave up waiting for {path.name}")
            time.sleep(0.001)

    store = open_store(StoreLocation(url))
    (workdir / f"ready-{index}").touch()
    wait_for(workdir / "go")
    began = time.perf_counter()
    try:
        run = store.start_run(NewRun("race", "tasks.json", this_host(), os.getpid(), time.time()))
        outcome = {"won": run.id}
    except RunAlreadyActive as exc:
        outcome = {"lost": exc.run_id, "pid": exc.pid}
    outcome["seconds"] = time.perf_counter() - began
    print(json.dumps(outcome), flush=True)
    (workdir / f"done-{index}").touch()
    wait_for(workdir / "finish")
    store.close()
    """
)


def wait_for_files(workdir: Path, prefix: str, processes: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + 60
    while len(list(workdir.glob(f"{prefix}-*"))) < len(processes):
        crashed = [p for p in processes if p.poll() not in (None, 0)]
        if crashed:
            pytest.fail(f"a starter exited early:\n{crashed[0].communicate()[1]}")
        assert time.monotonic() < deadline, f"starters did not all write {prefix} files"
        time.sleep(0.01)


@pytest.fixture(params=STATE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'state.db'}"
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return request.getfixturevalue("zk_url")


@pytest.mark.parametrize("initialised", [True, False], ids=["initialised", "fresh"])
def test_eight_simultaneous_starts_give_one_run_and_seven_refusals(
    store_url: str, initialised: bool, tmp_path: Path
) -> None:
    if initialised:
        store = open_store(StoreLocation(store_url))
        store.init()
        store.close()
    workdir = tmp_path / "barrier"
    workdir.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, store_url, str(workdir), str(index)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for index in range(STARTERS)
    ]
    try:
        wait_for_files(workdir, "ready", processes)
        (workdir / "go").touch()
        wait_for_files(workdir, "done", processes)
    finally:
        (workdir / "finish").touch()
        results = [process.communicate(timeout=60) for process in processes]

    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr, stderr
    outcomes = [json.loads(stdout) for stdout, _ in results]
    winners = [o["won"] for o in outcomes if "won" in o]
    losers = [o["lost"] for o in outcomes if "lost" in o]
    assert len(winners) == 1, outcomes
    assert losers == winners * (STARTERS - 1), outcomes

    store = open_store(StoreLocation(store_url))
    try:
        runs = store.list_runs(dag="race")
    finally:
        store.close()
    assert [(r.id, r.status) for r in runs] == [(winners[0], RunState.RUNNING)]  # no orphans
