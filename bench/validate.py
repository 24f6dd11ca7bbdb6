"""Validate: wall time and peak RSS of `mflow validate` and `mflow --dry-run` on a big DAG.

The DAG is layered like throughput.py's (width 100, fan-in 2 by default) with N tasks. Both
commands read and check the whole DAG; --dry-run also prints the plan, which goes to
/dev/null here so that the terminal does not set the pace. Peak RSS comes from `os.wait4`.

    .venv/bin/python bench/validate.py              # 100,000 tasks
"""

from __future__ import annotations

import argparse

from common import (
    Measured,
    add_dag_options,
    check_ok,
    clean_env,
    edge_count,
    layered_dag,
    median,
    mflow_command,
    print_table,
    timed_run,
    when,
    workdir,
    write_taskfile,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dag_options(parser, tasks=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each command (3)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    dag = layered_dag(args.tasks, args.width, args.fanin, args.seed)
    edges = edge_count(dag)
    results: dict[str, list[Measured]] = {"validate": [], "--dry-run": []}
    with workdir(args.keep, "mflow-bench-validate-") as tmp:
        taskfile = write_taskfile(tmp / "tasks.json", dag)
        size_mib = taskfile.stat().st_size / 2**20
        env = clean_env(MFLOW_HOME=str(tmp / "home"))
        commands = {
            "validate": [*mflow_command(), "validate", "-f", str(taskfile)],
            "--dry-run": [*mflow_command(), "--dry-run", "-f", str(taskfile)],
        }
        for _ in range(args.repeat):
            for name, argv in commands.items():
                # The plan of --dry-run is discarded; validate's one line is kept and checked.
                measured = timed_run(argv, cwd=tmp, env=env, capture=name == "validate")
                check_ok(measured, f"mflow {name}")
                if name == "validate" and f"{args.tasks} tasks" not in measured.stdout:
                    raise SystemExit(f"unexpected validate output: {measured.stdout[-500:]}")
                results[name].append(measured)

    print(
        f"validate: {args.tasks} tasks, {edges} edges, taskfile {size_mib:.1f} MiB, "
        f"{args.repeat} runs each"
    )
    print(when())
    print_table(
        ["command", "median s", "min s", "max s", "CPU s", "peak RSS MiB"],
        [
            [
                f"mflow {name}",
                median([r.seconds for r in runs]),
                min(r.seconds for r in runs),
                max(r.seconds for r in runs),
                median([r.cpu_seconds for r in runs]),
                max(r.max_rss_mib for r in runs),
            ]
            for name, runs in results.items()
        ],
    )


if __name__ == "__main__":
    main()
