"""The scheduler's figures (SPEC §5): fire latency, failover, and what one leader keeps up with.

- fire latency: real `mflow scheduler` processes fire 1-second jobs whose task writes the
  time it starts; latency = task start - slot time, p50 and p99 over `--fires` fires.
  Target: p99 at most 1 s.
- failover: two schedulers, the leader SIGKILLed; the time from the kill to the first slot
  the new leader claims. Target: at most 15 s with default settings on every backend.
- capacity: `--jobs` jobs due every minute (cron `* * * * *`), decided and claimed by one
  leader in this process with the real store but no run started (a run is an mflow process
  of ~0.3 s of CPU: a 2-core machine cannot start 1,000 a minute, whatever the scheduler);
  slots claimed per second, each slot's claim delay, the process's CPU and peak RSS, for a
  new leader's first turn (it reads every job's last slot first) and the next minute's.
  Target: every slot within 1 s of its time, RSS at most 200 MB.

    .venv/bin/python bench/scheduler.py                   # SQLite (fresh files)
    .venv/bin/python bench/scheduler.py --state 'postgresql+psycopg://...'
    .venv/bin/python bench/scheduler.py --start-zookeeper
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import mflow_command, print_table, shown_url, when, workdir, zookeeper_server


def env_for(url: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFLOW_")}
    env.update(MFLOW_STATE=url, MFLOW_HOME=str(home))
    return env


def mflow(cwd: Path, url: str, *args: str) -> str:
    done = subprocess.run(
        [*mflow_command(), *args], cwd=cwd, env=env_for(url, cwd / "home"),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"mflow {' '.join(args)}: {done.stderr}")
    return done.stdout


def scheduler(cwd: Path, url: str, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*mflow_command(), "scheduler", "--name", name], cwd=cwd, env=env_for(url, cwd / "home"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def fire_latency(cwd: Path, url: str, fires: int, jobs: int) -> list[float]:
    for i in range(jobs):
        job = {"type": "bash", "command": f"date +%s.%N >> starts{i}", "frequency": 1}
        mflow(cwd, url, "jobs", "add", f"tick{i}", json.dumps(job))
    process = scheduler(cwd, url, "latency")
    try:
        deadline = time.time() + fires / jobs + 60
        while time.time() < deadline:
            count = sum(len(p.read_text().split()) for p in cwd.glob("starts*"))
            if count >= fires:
                break
            time.sleep(0.5)
    finally:
        process.terminate()
        process.wait()
    latencies = []
    for path in cwd.glob("starts*"):
        for line in path.read_text().split():
            started = float(line)
            latencies.append(started - int(started))  # slots are on the second
    return latencies[:fires]


def failover(cwd: Path, url: str) -> float:
    job = {"type": "bash", "command": "true", "frequency": 1, "catchup": "all"}
    mflow(cwd, url, "jobs", "add", "steady", json.dumps(job))
    processes = {n: scheduler(cwd, url, n) for n in ("a", "b")}
    try:
        leader = None
        while leader is None:
            found = json.loads(mflow(cwd, url, "cluster", "show-leader", "--json"))
            leader = found["name"] if found else None
            time.sleep(0.2)
        time.sleep(3)
        processes[leader].send_signal(signal.SIGKILL)
        killed = time.time()
        from mflow.state import StoreLocation, open_store

        store = open_store(StoreLocation(url))
        try:
            old = store.leader()
            old_epoch = old.epoch if old else 0
            while time.time() - killed < 120:
                fired = [f for f in store.fires("steady", limit=50) if (f.epoch or 0) > old_epoch]
                if fired:
                    return min(f.at for f in fired) - killed
                time.sleep(0.2)
            return float("inf")
        finally:
            store.close()
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait()


@dataclass(frozen=True)
class Turn:
    rate: float  # slots claimed per second
    delays: list[float]  # each slot's claim time - slot time
    cpu: float


def capacity(url: str, jobs: int) -> tuple[Turn, Turn, float]:
    """Two turns of one leader over `jobs` jobs due every minute: the first of its term
    (every job's last slot read from the store in one request) and the
    next minute's (steady state: known). The peak RSS after both."""
    from mflow.plan import RunRequest
    from mflow.scheduler import catalog
    from mflow.scheduler.firing import Firer
    from mflow.state import StoreLocation, open_store

    store = open_store(StoreLocation(url))
    store.init()
    for i in range(jobs):
        catalog.add(
            store, f"cap{i:04d}", {"type": "bash", "command": "true", "cron": "* * * * *"}, "/"
        )
    lease = store.acquire_lease("bench", "bench-host", ttl=3600)
    assert lease is not None
    launched = []

    class Done:
        run_id = 1

    firer = Firer(
        store, "bench-host", RunRequest(), lambda request, parts: launched.append(1) or Done()
    )
    turns = []
    for _ in range(2):
        slot = (time.time() // 60 + 1) * 60
        time.sleep(max(0.0, slot - time.time()))
        cpu0 = time.process_time()
        started = time.time()
        firer.turn(lease)
        took = time.time() - started
        cpu = time.process_time() - cpu0
        delays = [
            f.at - f.slot
            for i in range(jobs)
            for f in store.fires(f"cap{i:04d}", limit=1)
            if f.slot == slot
        ]
        turns.append(Turn(jobs / took, delays, cpu))
    firer.close()
    store.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return turns[0], turns[1], rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", help="store URL (default: fresh SQLite files)")
    parser.add_argument("--start-zookeeper", action="store_true")
    parser.add_argument("--fires", type=int, default=100)
    parser.add_argument("--latency-jobs", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs due every minute (capacity)")
    parser.add_argument("--capacity-only", action="store_true", help="skip latency, failover")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with workdir(args.keep, "mflow-bench-scheduler-") as scratch:
        if args.start_zookeeper:
            with zookeeper_server(scratch) as url:
                report(url, args, scratch)
        else:
            report(args.state, args, scratch)


def report(state: str | None, args: argparse.Namespace, scratch: Path) -> None:
    def place(name: str) -> tuple[Path, str]:
        cwd = scratch / name
        cwd.mkdir()
        if state is None:
            return cwd, f"sqlite:///{cwd / 'state.db'}"
        if state.startswith("zk://"):
            return cwd, f"{state.rstrip('/')}-{name}"
        return cwd, state

    print(f"scheduler; store {shown_url(state, 'SQLite (fresh per measure)')}")
    print(when())
    rows = []
    if not args.capacity_only:
        latencies = fire_latency(*place("latency"), args.fires, args.latency_jobs)
        rows.append(
            [f"fire latency p50 ({len(latencies)} fires)", f"{statistics.median(latencies):.3f} s"]
        )
        rows.append(["fire latency p99", f"{percentile(latencies, 99):.3f} s"])
        failed_over = failover(*place("failover"))
        rows.append(["failover (leader SIGKILLed -> next slot fired)", f"{failed_over:.1f} s"])
    first, steady, rss = capacity(place("capacity")[1], args.jobs)
    for name, turn in (("a new leader's first turn", first), ("the next minute", steady)):
        rows.append(
            [
                f"capacity, {name}: {args.jobs} slots claimed per second",
                f"{turn.rate:.0f}/s",
            ]
        )
        rows.append(
            [
                f"capacity, {name}: claim delay p50 / max",
                f"{statistics.median(turn.delays):.2f} / {max(turn.delays):.2f} s",
            ]
        )
        rows.append([f"capacity, {name}: CPU of the turn", f"{turn.cpu:.2f} s"])
    rows.append(["capacity: peak RSS", f"{rss:.0f} MiB"])
    print_table(["measure", "figure"], rows)


if __name__ == "__main__":
    main()
