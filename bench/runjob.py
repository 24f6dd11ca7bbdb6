"""Partition claims (SPEC §6): claims per second with 1, 4 and 16 concurrent claimers, and
the time to find (and take) the next eligible partition among 100,000.

- claims: READY input partitions; each claimer process loops `claim_partition` then marks
  the output READY (no job is run: this is the store's share of `mflow runjob`), until
  nothing is ready; claims per second over all claimers.
- next eligible: 10 datasets of 10,000 partitions (less 1,000: the job reads 3 of them and
  writes a 4th, whose first 9,000 dataids are produced already); the time of one claim:
  a process's first (on ZooKeeper it lists the candidates; later claims of the same process
  go on from there), median and worst. Target: at most 50 ms on PostgreSQL and SQLite.
- one dataset: `--big` READY partitions of one input (200,000: more than one ZooKeeper
  answer can list, which is why its indexes are in buckets); a claimer's first claim, then
  1,000 claims (each marked READY) by one claimer.

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
from typing import Any

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


def fill(url: str, datasets: dict[str, int]) -> None:
    """READY partitions d000000, d000001, ...: `datasets[name]` of each, those not there."""
    from mflow.state import StoreLocation, open_store

    store = open_store(StoreLocation(url))
    store.init()
    for name, count in datasets.items():
        there = {p.dataid for p in store.partitions(name)}
        add_ready(store, name, [i for n in range(count) if (i := f"d{n:06d}") not in there])
    store.close()


def add_ready(store: Any, dataset: str, dataids: list[str]) -> None:
    """READY partitions in bulk, straight into the SQL table or, on ZooKeeper, the nodes
    set_partition writes (each partition node with its ready index node, then the one write
    to the index's root that tells claimers to list again) in transactions of many."""
    if hasattr(store, "engine"):
        import sqlalchemy as sa

        from mflow.state.ddl import partitions, to_db_time

        now = to_db_time(time.time())
        rows = [
            {"dataset": dataset, "dataid": dataid, "status": "READY", "updated_at": now,
             "heartbeat_at": now}
            for dataid in dataids
        ]  # fmt: skip
        with store.engine.begin() as conn:
            for start in range(0, len(rows), 5000):
                conn.execute(sa.insert(partitions), rows[start : start + 5000])
        return
    from mflow.state.base import Partition
    from mflow.state.zookeeper_client import commit_writes
    from mflow.state.zookeeper_partitions import _value
    from mflow.states import PartitionStatus

    store._prepare(dataset)
    now = time.time()
    ops = []
    for dataid in dataids:
        value = _value(Partition(dataset, dataid, PartitionStatus.READY, "bench"), now)
        ops.append((store.nodes.partition("partitions", dataset, dataid), value, False))
        ops.append((store.nodes.partition("ready", dataset, dataid), b"", False))
    commit_writes(store.client, [*ops, (store.nodes.tree("ready", dataset), b"", True)])


def claims_per_second(url: str, claimers: int, partitions: int, output: str) -> float:
    fill(url, {"in": partitions})
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

    # The job reads ds0-ds2 and writes ds9, whose first 9,000 dataids are produced already.
    datasets = {f"ds{i}": 10_000 if i < 9 else 9_000 for i in range(10)}
    fill(url, datasets)
    store = open_store(StoreLocation(url))
    try:
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


def one_dataset(url: str, size: int, claims: int) -> tuple[float, float]:
    """One input dataset of `size` READY partitions: the first claim (ms), then claims/s."""
    from mflow.state import StoreLocation, open_store
    from mflow.state.base import Claim, Partition
    from mflow.states import PartitionStatus

    fill(url, {"big": size})
    store = open_store(StoreLocation(url))
    try:
        claim = Claim("bench", "bench-host", os.getpid())
        started = time.perf_counter()
        assert store.claim_partition(claim, ["big"], "bigout") is not None
        first = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        for _ in range(claims):
            part = store.claim_partition(claim, ["big"], "bigout")
            assert part is not None
            store.set_partition(Partition("bigout", part.dataid, PartitionStatus.READY))
        return first, claims / (time.perf_counter() - started)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--partitions", type=int, default=2000, help="claimed per measure")
    parser.add_argument("--repeat", type=int, default=20, help="next-eligible claims timed")
    parser.add_argument("--big", type=int, default=200_000, help="one dataset's size (0: skip)")
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
    rows.append(["next eligible of 100,000 (a process's first)", f"{times[0]:.1f} ms"])
    rows.append(["next eligible of 100,000 (median)", f"{statistics.median(times):.1f} ms"])
    rows.append(["next eligible of 100,000 (max)", f"{max(times):.1f} ms"])
    if args.big:
        first, rate = one_dataset(fresh("big"), args.big, 1000)
        rows.append([f"one dataset of {args.big:,}: first claim", f"{first:.1f} ms"])
        rows.append([f"one dataset of {args.big:,}: next 1,000", f"{rate:.0f} claims/s"])
    print_table(["measure", "figure"], rows)


if __name__ == "__main__":
    main()
