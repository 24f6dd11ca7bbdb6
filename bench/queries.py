"""Queries: `mflow runs`, `status`, `dags` and `logs` on a store holding many runs.

Fills a store with RUNS finished runs of TASKS tasks each (rows written straight through
SQLAlchemy in bulk, as mflow's own tables and columns: the filling is not what is measured),
then times each command as an operator runs it, a new `mflow` process each time (start-up
included), and prints the median and the worst of REPEAT calls. Target: at most 300 ms per call
on 10,000 runs of 100 tasks.

    .venv/bin/python bench/queries.py                       # SQLite, 10,000 x 100
    .venv/bin/python bench/queries.py --state 'postgresql+psycopg://postgres@127.0.0.1/test?options=-csearch_path%3Dbench_q'
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import (
    clean_env,
    median,
    mflow_command,
    print_table,
    shown_url,
    timed_run,
    when,
    workdir,
)


def fill(url: str, runs: int, tasks: int) -> None:
    """RUNS finished runs of TASKS tasks each, in bulk; one DAG per 100 runs."""
    import sqlalchemy as sa

    from mflow.state import StoreLocation, open_store
    from mflow.state.ddl import run_defs, task_runs, to_db_time
    from mflow.state.ddl import runs as runs_table

    store = open_store(StoreLocation(url))
    store.init()
    snapshot = _snapshot(tasks)
    engine = store.engine  # type: ignore[attr-defined]
    start = time.time() - runs * 60
    with engine.begin() as conn:
        conn.execute(
            sa.insert(runs_table),
            [
                {
                    "dag": f"dag{n % (runs // 100 or 1)}",
                    "taskfile": "/srv/dags/x.json",
                    "status": "SUCCESS" if n % 10 else "FAILED",
                    "host": "bench",
                    "pid": 1,
                    "started_at": to_db_time(start + n * 60),
                    "ended_at": to_db_time(start + n * 60 + 30),
                    "heartbeat_at": to_db_time(start + n * 60 + 30),
                    "log_directory": "/srv/logs",
                }
                for n in range(runs)
            ],
        )
        ids = [row[0] for row in conn.execute(sa.select(runs_table.c.id).order_by(runs_table.c.id))]
    for chunk_start in range(0, len(ids), 500):
        rows = [
            {
                "run_id": run_id,
                "task_id": f"task_{t:03d}",
                "state": "SUCCESS",
                "attempt": 1,
                "started_at": to_db_time(start),
                "ended_at": to_db_time(start + 1),
                "exit_code": 0,
                "pid": 2,
                "host": "bench",
                "log_path": f"/srv/logs/master_{run_id}_task_task_{t:03d}.log",
                "reason": None,
            }
            for run_id in ids[chunk_start : chunk_start + 500]
            for t in range(tasks)
        ]
        with engine.begin() as conn:
            conn.execute(sa.insert(task_runs), rows)
            conn.execute(
                sa.insert(run_defs),
                [{"run_id": r, "snapshot": snapshot} for r in ids[chunk_start : chunk_start + 500]],
            )
    store.close()


def _snapshot(tasks: int) -> bytes:
    """What a run keeps of its DAG (mflow.plan.snapshot): TASKS tasks in layers of 10, each
    waiting for two of the layer before."""
    import json
    import zlib

    doc = {
        "name": "bench",
        "tasks": [
            {
                "id": f"task_{t:03d}",
                "type": "bash",
                "command": "true",
                "depends": sorted({f"task_{t - 10:03d}", f"task_{t - 10 - (t % 3):03d}"})
                if t >= 13
                else [],
            }
            for t in range(tasks)
        ],
    }
    kept = {"v": 1, "taskfile": json.dumps(doc), "taskfile_name": "x.json", "config": None}
    return zlib.compress(json.dumps(kept).encode(), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the store (10000)")
    parser.add_argument("--tasks", type=int, default=100, help="tasks per run (100)")
    parser.add_argument("--repeat", type=int, default=5, help="calls of each command (5)")
    parser.add_argument("--state", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    with workdir(args.keep, "mflow-bench-queries-") as scratch:
        url = args.state or f"sqlite:///{scratch / 'state.db'}"
        began = time.perf_counter()
        fill(url, args.runs, args.tasks)
        filled = time.perf_counter() - began
        env = clean_env(MFLOW_STATE=url, MFLOW_HOME=str(scratch / "home"))
        middle = args.runs // 2
        commands = {
            "runs": ["runs"],
            "runs --json -n 100": ["runs", "--json", "-n", "100"],
            "status (latest)": ["status"],
            f"status {middle}": ["status", str(middle)],
            "status --json": ["status", "--json"],
            "dags": ["dags"],
            f"logs {middle} task_050 --json": ["logs", str(middle), "task_050", "--json"],
            "--help (start-up alone)": ["--help"],
        }
        rows = []
        for name, argv in commands.items():
            times = []
            for _ in range(args.repeat):
                measured = timed_run([*mflow_command(), *argv], cwd=Path(scratch), env=env)
                if measured.returncode != 0:
                    sys.exit(
                        f"mflow {' '.join(argv)} exited {measured.returncode}:\n{measured.stdout}"
                    )
                times.append(measured.seconds * 1000)
            rows.append([name, median(times), max(times)])
        store = shown_url(args.state, "SQLite")
        print(
            f"queries: {args.runs} runs x {args.tasks} tasks, store {store}"
            f" (filled in {filled:.1f} s), {args.repeat} calls each"
        )
        print(when())
        print_table(["command", "median ms", "max ms"], rows)


if __name__ == "__main__":
    main()
