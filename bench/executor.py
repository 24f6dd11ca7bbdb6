"""The Celery executor against the local one: the same DAG of `true` tasks run by mflow on this
machine, then sent through a broker to two local `mflow worker`s.

Prints the wall time of each, the per-task overhead of remote dispatch ((celery - local) /
tasks) and the dispatch rate (tasks per second through the broker). The workers are started
before the timed runs and count as warm; each run is a new run on a fresh SQLite store.

    .venv/bin/python bench/executor.py                                   # Redis
    .venv/bin/python bench/executor.py --broker amqp://guest:guest@127.0.0.1:5672//
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid

from common import (
    add_dag_options,
    check_ok,
    clean_env,
    layered_dag,
    median,
    mflow_command,
    print_table,
    timed_run,
    when,
    workdir,
    write_taskfile,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dag_options(parser, 1000)
    parser.add_argument("-j", type=int, default=8, help="mflow's concurrency (8)")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/8", help="broker URL")
    parser.add_argument("--workers", type=int, default=2, help="local workers (2)")
    parser.add_argument("--worker-concurrency", type=int, default=4, help="each (4)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (3)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    with workdir(args.keep, "mflow-bench-executor-") as scratch:
        queue = f"bench{uuid.uuid4().hex[:8]}"
        dag = layered_dag(args.tasks, args.width, args.fanin, args.seed)
        taskfile = write_taskfile(scratch / "tasks.json", dag)
        doc = json.loads(taskfile.read_text())
        for task in doc["tasks"]:
            task["queue"] = queue
        taskfile.write_text(json.dumps(doc))
        local = scratch / "local"
        remote = scratch / "remote"
        for where in (local, remote):
            where.mkdir()
        (remote / "config.json").write_text(
            json.dumps({"executor": "celery", "broker": args.broker})
        )
        env = clean_env(MFLOW_HOME=str(scratch / "home"))
        workers = [
            subprocess.Popen(
                [
                    *mflow_command(),
                    "worker",
                    "--queues",
                    queue,
                    "-c",
                    str(args.worker_concurrency),
                    "--name",
                    f"bench{i}-{queue}",
                ],
                cwd=remote,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for i in range(args.workers)
        ]
        try:
            time.sleep(6)  # the workers connect and say hello
            times: dict[str, list[float]] = {"local": [], "celery": []}
            for n in range(args.repeat):
                for name, where in (("local", local), ("celery", remote)):
                    measured = timed_run(
                        [
                            *mflow_command(),
                            "--quiet",
                            "-j",
                            str(args.j),
                            "--taskfile",
                            str(taskfile),
                            "--state",
                            f"sqlite:///{scratch / f'{name}{n}.db'}",
                        ],
                        cwd=where,
                        env=env,
                    )
                    check_ok(measured, f"mflow ({name})")
                    times[name].append(measured.seconds)
        finally:
            for worker in workers:
                os.killpg(worker.pid, signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=30)
        local_s, celery_s = median(times["local"]), median(times["celery"])
        broker = args.broker.split("://")[0]
        print(
            f"executor: {args.tasks} `true` tasks (width {args.width}, fan-in {args.fanin}), "
            f"-j {args.j}; celery via {broker} to {args.workers} workers x "
            f"{args.worker_concurrency}; median of {args.repeat}"
        )
        print(when())
        print_table(
            ["executor", "median s", "min s", "max s", "tasks/s", "per task ms"],
            [
                [
                    "local",
                    local_s,
                    min(times["local"]),
                    max(times["local"]),
                    args.tasks / local_s,
                    local_s / args.tasks * 1000,
                ],
                [
                    "celery",
                    celery_s,
                    min(times["celery"]),
                    max(times["celery"]),
                    args.tasks / celery_s,
                    celery_s / args.tasks * 1000,
                ],
            ],
        )
        print(
            f"remote dispatch overhead: {(celery_s - local_s) / args.tasks * 1000:.2f} ms per "
            f"task ({celery_s / local_s:.1f}x local)"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
