"""Chain: the per-hop overhead of mflow and make on a chain of N `true` tasks.

Each task depends on the one before, so nothing runs in parallel and the wall time is start-up
plus N hops (start a task, notice it ended, record it, start the next). Start-up is measured
separately on a 1-task DAG, so that

    per-hop = (median wall time of the chain - median wall time of 1 task) / N

leaves out interpreter start-up and store creation. make and mflow run alternately, --repeat
times each; every mflow run gets a fresh MFLOW_HOME (SQLite) and log directory and is checked,
untimed, with `mflow status RUN --json`.

    .venv/bin/python bench/chain.py                 # 1,000 tasks, -j 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import (
    Dag,
    Measured,
    add_run_options,
    chain_dag,
    check_make_recipes,
    median,
    print_table,
    shown_url,
    time_make,
    time_mflow,
    when,
    workdir,
    write_makefile,
    write_taskfile,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="length of the chain (1000)")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="concurrency of both (1)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each tool (3)")
    add_run_options(parser)
    return parser.parse_args()


def measure(
    tmp: Path, name: str, dag: Dag, jobs: int, repeat: int, state: str | None
) -> tuple[list[Measured], list[Measured]]:
    """Wall times of make and of mflow on one DAG, run alternately `repeat` times each."""
    taskfile = write_taskfile(tmp / f"{name}.json", dag)
    makefile = write_makefile(tmp / f"{name}.mk", dag)
    check_make_recipes(makefile, jobs, tmp, len(dag))
    make_runs: list[Measured] = []
    mflow_runs: list[Measured] = []
    for i in range(repeat):
        make_runs.append(time_make(makefile, jobs, tmp))
        mflow_runs.append(time_mflow(taskfile, jobs, tmp, f"{name}-{i}", len(dag), state))
    return make_runs, mflow_runs


def main() -> None:
    args = parse_args()
    with workdir(args.keep, "mflow-bench-chain-") as tmp:
        make_one, mflow_one = measure(tmp, "one", chain_dag(1), args.jobs, args.repeat, args.state)
        make_n, mflow_n = measure(
            tmp, "chain", chain_dag(args.tasks), args.jobs, args.repeat, args.state
        )

    print(
        f"chain: {args.tasks} tasks, -j {args.jobs}, {args.repeat} runs each; "
        f"store: {shown_url(args.state)}"
    )
    print(when())
    rows = []
    per_hop: dict[str, float] = {}
    for tool, one_runs, chain_runs in (("make", make_one, make_n), ("mflow", mflow_one, mflow_n)):
        one = [r.seconds for r in one_runs]
        chain = [r.seconds for r in chain_runs]
        per_hop[tool] = (median(chain) - median(one)) / args.tasks
        cpu = median([r.cpu_seconds for r in chain_runs])
        rss = max(r.max_rss_mib for r in chain_runs)
        rows.append(
            [
                tool,
                median(one),
                median(chain),
                min(chain),
                max(chain),
                cpu,
                rss,
                per_hop[tool] * 1000,
            ]
        )
    print_table(
        [
            "tool",
            "1 task s",
            "chain median s",
            "min s",
            "max s",
            "CPU s",
            "peak RSS MiB",
            "per-hop ms",
        ],
        rows,
    )
    if min(per_hop.values()) <= 0:
        print("per-hop overhead lost in the noise of start-up: raise --tasks or --repeat")
    else:
        print(f"per-hop overhead mflow/make: {per_hop['mflow'] / per_hop['make']:.2f}x")


if __name__ == "__main__":
    main()
