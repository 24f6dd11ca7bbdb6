"""Partition claims (SPEC §6): claims per second with 1, 4 and 16 concurrent claimers, and
the time to find (and take) the next eligible partition among 100,000.

- claims: READY input partitions; each claimer process loops `claim_partition` then marks
  the output READY (no job is run: this is the store's share of `mflow runjob`), until
  nothing is ready; claims per second over all claimers.
- next eligible: 10 datasets x 10,000 partitions; a job reads 3 of them and writes a 4th,
  whose first 9,000 dataids are produced already; median and worst time of one claim.
  Target: at most 50 ms on PostgreSQL and SQLite.

    .venv/bin/python bench/runjob.py                  # SQLite, a fresh file
    .venv/bin/python bench/runjob.py --state postgresql+psycopg://postgres@127.0.0.1/test?options=-csearch_path%3Dbench_r
    .venv/bin/python bench/runjob.py --start-zookeeper
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import print_table, shown_url, when, workdir, zookeeper_server

CLAIMER = """
import os, sys, time
from mflow.state import StoreLocation, open_store
from mflow.state.base import Claim, Partition, this_host
from mflow.states import PartitionStatus
store = open_store(StoreLocation(sys.argv[1]))
claim = Claim("bench", this_host(), os.getpid())
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
n = 0
while (p := store.claim_partition(claim, ["in"], sys.argv[3])) is not None:
    store.set_partition(Partition(sys.argv[3], p.dataid, PartitionStatus.READY, "bench"))
    n += 1
store.close()
print(n)
"""


def fill(url: str, datasets: dict[str, int], produced: dict[str, int]) -> None:
    """READY partitions: `datasets[name]` of each; `produced[name]` first dataids only."""
    from mflow.state import StoreLocation, open_store

    store = open_store(StoreLocation(url))
    store.init()
    if hasattr(store, "engine"):  # SQL: in bulk, straight into the table
        import sqlalchemy as sa

        from mflow.state.ddl import partitions, to_db_time

        now = to_db_time(time.time())
        with store.engine.begin() as conn:  # type: ignore[attr-defined]
            for name, count in {**datasets, **produced}.items():
                rows = [
                    {"dataset": name, "dataid": f"d{i:06d}", "status": "READY",
                     "updated_at": now, "heartbeat_at": now}
                    for i in range(count)
                ]  # fmt: skip
                for start in range(0, len(rows), 5000):
                    conn.execute(sa.insert(partitions), rows[start : start + 5000])
    else:
        from mflow.state.base import Partition
        from mflow.states import PartitionStatus

        for name, count in {**datasets, **produced}.items():
            for i in range(count):
                store.set_partition(Partition(name, f"d{i:06d}", PartitionStatus.READY))
    store.close()


def claims_per_second(url: str, claimers: int, partitions: int, output: str) -> float:
    fill(url, {}, {})
    from mflow.state import StoreLocation, open_store
    from mflow.state.base import Partition
    from mflow.states import PartitionStatus

    store = open_store(StoreLocation(url))
    existing = {p.dataid for p in store.partitions("in")}
    for i in range(partitions):
        if f"d{i:06d}" not in existing:
            store.set_partition(Partition("in", f"d{i:06d}", PartitionStatus.READY))
    store.close()
    go = time.time() + 2.0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url, str(go), output],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(claimers)
    ]
    counts = [int(p.communicate()[0]) for p in procs]
    took = time.time() - go
    assert sum(counts) == partitions, (counts, partitions)
    return partitions / took


def next_eligible(url: str, repeat: int) -> list[float]:
    from mflow.state import StoreLocation, open_store
    from mflow.state.base import Claim

    datasets = {f"ds{i}": 10_000 for i in range(10)}
    fill(url, datasets, {"out": 0})
    store = open_store(StoreLocation(url))
    try:
        from mflow.state.base import Partition
        from mflow.states import PartitionStatus

        if hasattr(store, "engine"):
            import sqlalchemy as sa

            from mflow.state.ddl import partitions, to_db_time

            now = to_db_time(time.time())
            rows = [{"dataset": "ds9", "dataid": f"d{i:06d}", "status": "READY", "updated_at": now,
                     "heartbeat_at": now} for i in range(9000)]  # fmt: skip
            with store.engine.begin() as conn:  # type: ignore[attr-defined]
                conn.execute(sa.delete(partitions).where(partitions.c.dataset == "ds9"))
                for start in range(0, len(rows), 5000):
                    conn.execute(sa.insert(partitions), rows[start : start + 5000])
        else:
            for i in range(9000):
                store.set_partition(Partition("ds9", f"d{i:06d}", PartitionStatus.READY))
        claim = Claim("bench", "bench-host", os.getpid())
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            found = store.claim_partition(claim, ["ds0", "ds1", "ds2"], "ds9")
            times.append((time.perf_counter() - started) * 1000)
            assert found is not None and found.dataid >= "d009000", found
        return times
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--partitions", type=int, default=2000, help="claimed per measure")
    parser.add_argument("--repeat", type=int, default=20, help="next-eligible claims timed")
    parser.add_argument("--start-zookeeper", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    with workdir(args.keep, "mflow-bench-runjob-") as scratch:
        if args.start_zookeeper:
            with zookeeper_server(scratch) as url:
                report(url, args, scratch)
        else:
            report(args.state, args, scratch)


def report(state: str | None, args: argparse.Namespace, scratch: Path) -> None:
    def fresh(name: str) -> str:
        if state is None:
            return f"sqlite:///{scratch / name}.db"
        if state.startswith("zk://"):
            return f"{state.rstrip('/')}-{name}"
        return state

    print(f"partition claims; store {shown_url(state, 'SQLite (fresh per measure)')}")
    print(when())
    rows = []
    for claimers in (1, 4, 16):
        rate = claims_per_second(
            fresh(f"claims{claimers}"), claimers, args.partitions, f"out{claimers}"
        )
        rows.append([f"{claimers} claimers", f"{rate:.0f} claims/s"])
    times = next_eligible(fresh("eligible"), args.repeat)
    rows.append(["next eligible of 100,000 (median)", f"{statistics.median(times):.1f} ms"])
    rows.append(["next eligible of 100,000 (max)", f"{max(times):.1f} ms"])
    print_table(["measure", "figure"], rows)


if __name__ == "__main__":
    main()
