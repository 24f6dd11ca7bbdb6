"""Instructions: what one task costs mflow, counted by callgrind instead of timed.

Wall and CPU times on a shared 2-core machine move by ±10 % from one run to the next, more
than most single changes to mflow's hot path. Valgrind's callgrind counts the instructions
mflow executes (user space only: the kernel's share of a system call is not in them), and the
count hardly depends on what else the machine is doing: repeated runs agree within 1 to 2 %
(what varies is how often the runner's loop turns and how the writer batches).

It runs mflow under `valgrind --tool=callgrind --separate-threads=yes` twice, on a 1-task DAG
and on a layered DAG of N tasks, and prints per task

    (instructions of the N-task run - instructions of the 1-task run) / (N - 1)

for the runner's thread (the main thread), for the other threads (store writer, driver
threads) and for all of them. The tasks themselves (`true`) are not counted: callgrind does
not follow mflow's children. Under valgrind mflow runs ~20x slower, so the store writer's
batches are smaller than in a real run and its share is overstated; the runner's is not.

    .venv/bin/python bench/instructions.py            # 1,000 tasks, width 100, fan-in 2, -j 8
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

from common import (
    Dag,
    Measured,
    add_dag_options,
    add_run_options,
    chain_dag,
    clean_env,
    layered_dag,
    mflow_run_argv,
    print_table,
    shown_url,
    verify_mflow_run,
    when,
    workdir,
    write_taskfile,
)

SUMMARY = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dag_options(parser, tasks=1000)
    parser.add_argument("-j", "--jobs", type=int, default=8, help="mflow's concurrency (8)")
    add_run_options(parser)
    return parser.parse_args()


def count(tmp: Path, name: str, dag: Dag, jobs: int, state: str | None) -> tuple[int, int]:
    """(main thread, all threads) instructions of one mflow run of `dag` under callgrind."""
    taskfile = write_taskfile(tmp / f"{name}.json", dag)
    out = tmp / f"callgrind-{name}"
    out.mkdir()
    env = clean_env(MFLOW_HOME=str(tmp / f"home-{name}"))
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        f"--callgrind-out-file={out}/callgrind.out",
        *mflow_run_argv(taskfile, jobs, tmp / f"logs-{name}", state),
    ]
    done = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"mflow under valgrind failed ({done.returncode}):\n{done.stderr[-2000:]}")
    verify_mflow_run(
        Measured(0.0, 0.0, 0.0, 0, done.stdout), len(dag), cwd=tmp, env=env, state=state
    )
    threads: dict[int, int] = {}
    for path in out.iterdir():  # callgrind.out-01 is the main thread, -02... the others
        found = SUMMARY.search(path.read_text(errors="replace"))
        if found:
            threads[int(path.name.rsplit("-", 1)[1])] = int(found.group(1))
    if 1 not in threads:
        sys.exit(f"no main-thread profile in {out}")
    return threads[1], sum(threads.values())


def main() -> None:
    args = parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("bench/instructions.py needs valgrind (apt-get install valgrind)")
    dag = layered_dag(args.tasks, args.width, args.fanin, args.seed)
    with workdir(args.keep, "mflow-bench-instructions-") as tmp:
        one_main, one_all = count(tmp, "one", chain_dag(1), args.jobs, args.state)
        n_main, n_all = count(tmp, "dag", dag, args.jobs, args.state)

    print(
        f"instructions: {args.tasks} tasks, width {args.width}, fan-in {args.fanin}, "
        f"-j {args.jobs}; store: {shown_url(args.state)}; callgrind, user space only"
    )
    print(when())
    per_task = args.tasks - 1
    rows = [
        ["runner (main thread)", one_main, n_main, (n_main - one_main) / per_task],
        [
            "other threads",
            one_all - one_main,
            n_all - n_main,
            ((n_all - n_main) - (one_all - one_main)) / per_task,
        ],
        ["all threads", one_all, n_all, (n_all - one_all) / per_task],
    ]
    print_table(
        ["thread", "1-task run", f"{args.tasks}-task run", "per task"],
        [[name, f"{a:,}", f"{b:,}", f"{c:,.0f}"] for name, a, b, c in rows],
    )


if __name__ == "__main__":
    main()
