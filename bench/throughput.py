"""Throughput: mflow against `make -j` on a layered random DAG of `true` tasks.

The DAG has layers of --width tasks; each task of a layer after the first depends on --fanin
random distinct tasks of the layer before (seeded by --seed). It is written as an mflow
taskfile and as a Makefile with the same edges, then `make -s -jJ` and `mflow --quiet -j J`
run alternately, --repeat times each. Every mflow run is a new run: with the default store
each gets a fresh MFLOW_HOME (so a fresh SQLite file) and log directory; with --state every
run records into that store (the previous run has ended, so the run lock is free).

Untimed checks: make executes N recipes (one `make --trace` run, counting echoed recipes) and
`mflow status RUN --json` shows N tasks in SUCCESS after every mflow run.

    .venv/bin/python bench/throughput.py                      # 10,000 tasks, -j 8, SQLite
    .venv/bin/python bench/throughput.py --state 'postgresql+psycopg://...'
    .venv/bin/python bench/throughput.py --start-zookeeper
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack

from common import (
    Measured,
    add_dag_options,
    add_run_options,
    check_make_recipes,
    edge_count,
    layered_dag,
    median,
    print_table,
    shown_url,
    time_make,
    time_mflow,
    when,
    workdir,
    write_makefile,
    write_taskfile,
    zookeeper_server,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dag_options(parser, tasks=10_000)
    parser.add_argument("-j", "--jobs", type=int, default=8, help="concurrency of both (8)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each tool (3)")
    add_run_options(parser)
    parser.add_argument(
        "--start-zookeeper",
        action="store_true",
        help="start a throw-away ZooKeeper server (Debian package) and use it as --state",
    )
    args = parser.parse_args()
    if args.start_zookeeper and args.state:
        parser.error("--start-zookeeper and --state exclude each other")
    return args


def main() -> None:
    args = parse_args()
    dag = layered_dag(args.tasks, args.width, args.fanin, args.seed)
    with ExitStack() as stack:
        tmp = stack.enter_context(workdir(args.keep, "mflow-bench-throughput-"))
        state = args.state
        if args.start_zookeeper:
            state = stack.enter_context(zookeeper_server(tmp / "zookeeper"))
        taskfile = write_taskfile(tmp / "tasks.json", dag)
        makefile = write_makefile(tmp / "Makefile", dag)

        check_make_recipes(makefile, args.jobs, tmp, args.tasks)

        make_runs: list[Measured] = []
        mflow_runs: list[Measured] = []
        for i in range(args.repeat):
            make_runs.append(time_make(makefile, args.jobs, tmp))
            mflow_runs.append(time_mflow(taskfile, args.jobs, tmp, str(i), args.tasks, state))

    print(
        f"throughput: {args.tasks} tasks, width {args.width}, fan-in {args.fanin} "
        f"({edge_count(dag)} edges), -j {args.jobs}, {args.repeat} runs each; "
        f"store: {shown_url(state)}"
    )
    print(when())
    print_table(
        ["tool", "median s", "min s", "max s", "tasks/s", "CPU s", "peak RSS MiB"],
        [
            [name, median(t), min(t), max(t), round(args.tasks / median(t)), cpu, rss]
            for name, runs in (("make", make_runs), ("mflow", mflow_runs))
            for t in [[r.seconds for r in runs]]
            for cpu in [median([r.cpu_seconds for r in runs])]
            for rss in [max(r.max_rss_mib for r in runs)]
        ],
    )
    ratio = median([r.seconds for r in mflow_runs]) / median([r.seconds for r in make_runs])
    print(f"mflow/make (median/median): {ratio:.2f}x; every run verified: {args.tasks} tasks")


if __name__ == "__main__":
    main()
