"""Floor: the least a Python program can do to run the DAG, against make and mflow.

`throughput.py` compares mflow with make. This script adds what any Python scheduler costs at
least, so that the gap can be split into what Python costs and what mflow does besides: a
loop of ~50 lines (written to the scratch directory as `floor_loop.py`, standard library
only) that reads the same taskfile, keeps a count of unmet dependencies per task, starts
every ready task with `os.posix_spawn` up to -j, watches each with a pidfd in `poll`, and
reaps it. No log, no store, no retries, no timeouts, no events. Run twice: without any
output file, and with a log file per task created and given a header line, as mflow does.

make, the loop, the loop with logs and mflow (default SQLite store unless --state) run
alternately, --repeat times each, on the layered DAG of `throughput.py`; the table gives
medians and each one's ratio to make. Untimed checks: the loop verifies it reaped every task
with exit code 0; mflow's runs are checked as in `throughput.py`.

    .venv/bin/python bench/floor.py                  # 10,000 tasks, width 100, fan-in 2, -j 8
"""

from __future__ import annotations

import argparse
import sys

from common import (
    Measured,
    add_dag_options,
    add_run_options,
    check_make_recipes,
    check_ok,
    layered_dag,
    median,
    print_table,
    shown_url,
    time_make,
    time_mflow,
    timed_run,
    when,
    workdir,
    write_makefile,
    write_taskfile,
)

# argv: taskfile, jobs, [log directory]. Exits 1 unless every task ran and exited 0.
FLOOR_LOOP = """
import heapq, json, os, select, shutil, sys

tasks = json.load(open(sys.argv[1]))["tasks"]
jobs = int(sys.argv[2])
logs = sys.argv[3] if len(sys.argv) > 3 else None
order = {t["id"]: i for i, t in enumerate(tasks)}
dependents = {t["id"]: [] for t in tasks}
waiting = {}
for t in tasks:
    for dep in t.get("depends", ()):
        dependents[dep].append(t["id"])
    waiting[t["id"]] = len(t.get("depends", ()))
command = {t["id"]: t["command"].split() for t in tasks}
ready = [(order[t], t) for t, n in waiting.items() if n == 0]
heapq.heapify(ready)
env = dict(os.environ)
found = {}
poll, running, done = select.poll(), {}, 0
flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
while done < len(tasks):
    while ready and len(running) < jobs:
        _, task = heapq.heappop(ready)
        argv = command[task]
        path = found.get(argv[0]) or found.setdefault(argv[0], shutil.which(argv[0]))
        actions = []
        if logs:
            fd = os.open(f"{logs}/{task}.log", flags, 0o644)
            os.write(fd, f"===== {task}: {' '.join(argv)}\\n".encode())
            actions = [(os.POSIX_SPAWN_DUP2, fd, 1), (os.POSIX_SPAWN_DUP2, fd, 2)]
        pid = os.posix_spawn(path, argv, dict(env, TASK_ID=task), file_actions=actions,
                             setsid=True)
        if logs:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        poll.register(pidfd, select.POLLIN)
        running[pidfd] = (pid, task)
    for pidfd, _ in poll.poll():
        pid, task = running.pop(pidfd)
        poll.unregister(pidfd)
        os.close(pidfd)
        if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
            sys.exit(f"{task} failed")
        done += 1
        for dependent in dependents[task]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, (order[dependent], dependent))
print(f"floor loop: {done} tasks ran")
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dag_options(parser, tasks=10_000)
    parser.add_argument("-j", "--jobs", type=int, default=8, help="concurrency of all (8)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (3)")
    add_run_options(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    dag = layered_dag(args.tasks, args.width, args.fanin, args.seed)
    runs: dict[str, list[Measured]] = {"make": [], "loop": [], "loop + logs": [], "mflow": []}
    with workdir(args.keep, "mflow-bench-floor-") as tmp:
        taskfile = write_taskfile(tmp / "tasks.json", dag)
        makefile = write_makefile(tmp / "Makefile", dag)
        check_make_recipes(makefile, args.jobs, tmp, args.tasks)
        loop = tmp / "floor_loop.py"
        loop.write_text(FLOOR_LOOP)
        for i in range(args.repeat):
            runs["make"].append(time_make(makefile, args.jobs, tmp))

            for name, extra in (("loop", []), ("loop + logs", [str(tmp / f"loop-logs-{i}")])):
                if extra:
                    (tmp / f"loop-logs-{i}").mkdir()
                argv = [sys.executable, str(loop), str(taskfile), str(args.jobs), *extra]
                measured = timed_run(argv, cwd=tmp)
                check_ok(measured, name)
                runs[name].append(measured)

            runs["mflow"].append(
                time_mflow(taskfile, args.jobs, tmp, str(i), args.tasks, args.state)
            )

    print(
        f"floor: {args.tasks} tasks, width {args.width}, fan-in {args.fanin}, -j {args.jobs}, "
        f"{args.repeat} runs each; mflow's store: {shown_url(args.state)}"
    )
    print(when())
    make_median = median([r.seconds for r in runs["make"]])
    print_table(
        ["program", "median s", "min s", "max s", "CPU s", "/ make"],
        [
            [name, median(t), min(t), max(t), median([r.cpu_seconds for r in rs]), ratio]
            for name, rs in runs.items()
            for t in [[r.seconds for r in rs]]
            for ratio in [f"{median(t) / make_median:.2f}x"]
        ],
    )


if __name__ == "__main__":
    main()
