"""The HTTP API and the web view: latency of a real `mflow serve` on a store of many runs.

Fills a store with RUNS finished runs of TASKS tasks each (as bench/queries.py does), starts
`mflow serve` on it, and times REQUESTS sequential requests of each endpoint over one kept-alive
connection (after a few to warm up), printing p50 and p99 in milliseconds. Target: p99 at most
100 ms for the JSON endpoints on SQLite with 10,000 runs of 100 tasks.

    .venv/bin/python bench/api.py                     # SQLite, 10,000 x 100
    .venv/bin/python bench/api.py --state 'postgresql+psycopg://postgres@127.0.0.1/test?options=-csearch_path%3Dbench_api'
"""

from __future__ import annotations

import argparse
import http.client
import subprocess
import sys
import time
from pathlib import Path

from common import _free_port, clean_env, mflow_command, print_table, shown_url, when, workdir
from queries import fill


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the store (10000)")
    parser.add_argument("--tasks", type=int, default=100, help="tasks per run (100)")
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint (200)")
    parser.add_argument("--state", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    with workdir(args.keep, "mflow-bench-api-") as scratch:
        url = args.state or f"sqlite:///{scratch / 'state.db'}"
        began = time.perf_counter()
        fill(url, args.runs, args.tasks)
        filled = time.perf_counter() - began
        port = _free_port()
        env = clean_env(MFLOW_HOME=str(scratch / "home"))
        server = subprocess.Popen(
            [*mflow_command(), "serve", "--port", str(port), "--state", url],
            cwd=Path(scratch),
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            deadline = time.monotonic() + 30
            while True:
                try:
                    connection.request("GET", "/healthz")
                    connection.getresponse().read()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        sys.exit("mflow serve did not answer")
                    connection.close()
                    time.sleep(0.2)
            middle = args.runs // 2
            endpoints = {
                "GET /v1/runs": "/v1/runs",
                "GET /v1/runs?page_size=250": "/v1/runs?page_size=250",
                "GET /v1/runs?dag=dag0&status=FAILED": "/v1/runs?dag=dag0&status=FAILED",
                f"GET /v1/runs/{middle}": f"/v1/runs/{middle}",
                f"GET /v1/runs/{middle}/tasks/task_050/log": (
                    f"/v1/runs/{middle}/tasks/task_050/log"
                ),
                "GET /runs (page)": "/runs",
                f"GET /runs/{middle} (page)": f"/runs/{middle}",
            }
            rows = []
            for name, path in endpoints.items():
                times = []
                for i in range(args.requests + 5):
                    start = time.perf_counter()
                    connection.request("GET", path)
                    answer = connection.getresponse()
                    body = answer.read()
                    took = (time.perf_counter() - start) * 1000
                    if answer.status != 200:
                        sys.exit(f"{path}: {answer.status} {body[:300]!r}")
                    if i >= 5:
                        times.append(took)
                rows.append([name, percentile(times, 0.5), percentile(times, 0.99), len(body)])
        finally:
            server.terminate()
            server.wait(timeout=10)
        print(
            f"api: {args.runs} runs x {args.tasks} tasks, store {shown_url(args.state, 'SQLite')}"
            f" (filled in {filled:.1f} s), {args.requests} requests each, one connection"
        )
        print(when())
        print_table(["endpoint", "p50 ms", "p99 ms", "bytes"], rows)


if __name__ == "__main__":
    main()
