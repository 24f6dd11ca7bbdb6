"""Child runs: a parent DAG of `type: mflow` tasks, and the start-up cost of mflow itself.

The parent DAG has --children independent tasks, each running a tiny child DAG (one `true`
task, a file of its own) as a child mflow run (`python -m mflow` in a process of its own).
It runs with a fresh MFLOW_HOME (SQLite) and is checked with `mflow status RUN --json`.
For reference the script also times a run of the child DAG alone, `python -m mflow --help`
and `python -c pass` (medians of --samples runs), so that the cost of importing mflow shows.

    .venv/bin/python bench/child.py                 # 20 children, -j 4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import (
    Measured,
    check_ok,
    clean_env,
    median,
    mflow_run_argv,
    print_table,
    timed_run,
    verify_mflow_run,
    when,
    workdir,
    write_taskfile,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--children", type=int, default=20, help="child-run tasks (20)")
    parser.add_argument("-j", "--jobs", type=int, default=4, help="concurrency (4)")
    parser.add_argument("--repeat", type=int, default=3, help="timed parent runs (3)")
    parser.add_argument("--samples", type=int, default=10, help="runs of each start-up (10)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return parser.parse_args()


def write_parent(path: Path, children: int) -> Path:
    """The parent DAG, and one child taskfile per child task.

    Each child has a file (a DAG name) of its own: mflow allows one active run per DAG name
    in a store, so children of one DAG file would wait for or fail on each other's lock.
    """
    tasks = []
    for i in range(children):
        child = write_taskfile(path.with_name(f"child-{i}.json"), [("t0", [])])
        tasks.append({"id": f"c{i}", "type": "mflow", "taskfile": child.name})
    path.write_text(json.dumps({"tasks": tasks}, indent=1) + "\n")
    return path


def startup(argv: list[str], tmp: Path, samples: int) -> list[Measured]:
    runs = [timed_run(argv, cwd=tmp, env=clean_env(), capture=False) for _ in range(samples)]
    for run in runs:
        check_ok(run, " ".join(argv))
    return runs


def main() -> None:
    args = parse_args()
    with workdir(args.keep, "mflow-bench-child-") as tmp:
        parent = write_parent(tmp / "parent.json", args.children)
        child = tmp / "child-0.json"

        parents: list[Measured] = []
        singles: list[Measured] = []
        for i in range(args.repeat):
            env = clean_env(MFLOW_HOME=str(tmp / f"home-{i}"))
            argv = mflow_run_argv(parent, args.jobs, tmp / f"logs-{i}", None)
            measured = timed_run(argv, cwd=tmp, env=env)
            verify_mflow_run(measured, args.children, cwd=tmp, env=env, state=None)
            parents.append(measured)

            env = clean_env(MFLOW_HOME=str(tmp / f"home-single-{i}"))
            argv = mflow_run_argv(child, 1, tmp / f"logs-single-{i}", None)
            measured = timed_run(argv, cwd=tmp, env=env)
            verify_mflow_run(measured, 1, cwd=tmp, env=env, state=None)
            singles.append(measured)

        helps = startup([sys.executable, "-m", "mflow", "--help"], tmp, args.samples)
        passes = startup([sys.executable, "-c", "pass"], tmp, args.samples)

    wall = [r.seconds for r in parents]
    print(
        f"child runs: {args.children} `type: mflow` tasks of 1 `true` task each, -j {args.jobs}, "
        f"{args.repeat} runs; start-ups: median of {args.samples}"
    )
    print(when())
    print_table(
        ["what", "median s", "min s", "max s", "CPU s", "peak RSS MiB"],
        [
            [
                name,
                median(t),
                min(t),
                max(t),
                median([r.cpu_seconds for r in runs]),
                max(r.max_rss_mib for r in runs),
            ]
            for name, runs in (
                (f"parent run, {args.children} children", parents),
                ("child DAG run alone", singles),
                ("python -m mflow --help", helps),
                ("python -c pass", passes),
            )
            for t in [[r.seconds for r in runs]]
        ],
    )
    per_child = median(wall) / args.children
    print(
        f"per child: {per_child * 1000:.0f} ms of parent wall time "
        f"({per_child * args.jobs * 1000:.0f} ms of a slot at -j {args.jobs})"
    )


if __name__ == "__main__":
    main()
