"""The state-store contract, partitions side (SPEC §6), on every backend: datasets, partition
statuses, and claims that never hand one partition to two claimers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from test_state_contract import dead_pid

from mflow.state.base import STALE_AFTER, Claim, Dataset, Partition, StateStore, this_host
from mflow.states import PartitionStatus as P

ME = Claim("load", this_host(), os.getpid())


def ready(store: StateStore, dataset: str, *dataids: str) -> None:
    for dataid in dataids:
        store.set_partition(Partition(dataset, dataid, P.READY, job="feed"))


def test_datasets_are_created_and_replaced(store: StateStore) -> None:
    assert store.put_dataset(Dataset("sales", {"path": "/data/sales/${dataid}"}))
    assert store.put_dataset(Dataset("costs", {"table": "costs_${dataid}"}))
    assert not store.put_dataset(Dataset("sales", {"path": "/new/${dataid}"}))
    assert [(d.name, dict(d.fields)) for d in store.datasets()] == [
        ("costs", {"table": "costs_${dataid}"}),
        ("sales", {"path": "/new/${dataid}"}),
    ]


def test_partitions_are_listed_by_dataset_dataid_and_status(store: StateStore) -> None:
    ready(store, "b", "2026-11-02", "2026-11-01")
    store.set_partition(Partition("a", "x", P.FAILED, job="j", run_id=7, host="h", pid=3))
    found = [(p.dataset, p.dataid, p.status) for p in store.partitions()]
    assert found == [
        ("a", "x", P.FAILED),
        ("b", "2026-11-01", P.READY),
        ("b", "2026-11-02", P.READY),
    ]
    assert [p.dataid for p in store.partitions("b")] == ["2026-11-01", "2026-11-02"]
    (failed,) = store.partitions(status=P.FAILED)
    assert (failed.job, failed.run_id, failed.host, failed.pid) == ("j", 7, "h", 3)
    store.set_partition(Partition("a", "x", P.RESUBMIT))
    assert store.partitions("a")[0].status is P.RESUBMIT


def test_a_claim_takes_the_smallest_dataid_whose_inputs_are_all_ready(store: StateStore) -> None:
    ready(store, "sales", "03", "01", "02")
    ready(store, "costs", "02", "03")
    claimed = store.claim_partition(ME, ["sales", "costs"], "report")
    assert claimed is not None and claimed.dataid == "02"
    assert claimed.status is P.RUNNING and claimed.job == "load"
    (row,) = store.partitions("report")
    assert (row.dataid, row.status, row.host, row.pid) == ("02", P.RUNNING, ME.host, ME.pid)
    assert store.claim_partition(ME, ["sales", "costs"], "report").dataid == "03"  # type: ignore[union-attr]
    assert store.claim_partition(ME, ["sales", "costs"], "report") is None  # 01 lacks costs


def test_ready_failed_and_running_outputs_are_never_claimed_resubmit_is(store: StateStore) -> None:
    ready(store, "in", "1", "2", "3", "4")
    ready(store, "out", "1")
    store.set_partition(Partition("out", "2", P.FAILED))
    store.set_partition(Partition("out", "3", P.RUNNING, host=ME.host, pid=ME.pid))
    store.set_partition(Partition("out", "4", P.RESUBMIT))
    assert store.claim_partition(ME, ["in"], "out").dataid == "4"  # type: ignore[union-attr]
    assert store.claim_partition(ME, ["in"], "out") is None


def test_a_claim_of_a_given_dataid(store: StateStore) -> None:
    ready(store, "in", "1", "2")
    assert store.claim_partition(ME, ["in"], "out", dataid="2").dataid == "2"  # type: ignore[union-attr]
    assert store.claim_partition(ME, ["in"], "out", dataid="2") is None
    assert store.claim_partition(ME, ["in"], "out", dataid="9") is None
    assert store.claim_partition(ME, [], "solo", dataid="x").dataid == "x"  # type: ignore[union-attr]
    assert store.claim_partition(ME, [], "solo") is None


def test_a_gone_claimers_partition_is_claimable_again(store: StateStore) -> None:
    ready(store, "in", "1", "2")
    store.set_partition(Partition("out", "1", P.RUNNING, host=this_host(), pid=dead_pid()))
    assert store.claim_partition(ME, ["in"], "out").dataid == "1"  # type: ignore[union-attr]
    # Another host's claimer is gone only once its heartbeat is older than STALE_AFTER.
    store.set_partition(Partition("out", "2", P.RUNNING, host="elsewhere", pid=1))
    assert store.claim_partition(ME, ["in"], "out") is None
    store.heartbeat_partition("out", "1", ME)
    (mine,) = [p for p in store.partitions("out") if p.dataid == "1"]
    assert time.time() - mine.heartbeat_at < STALE_AFTER


CLAIMER = """
import json, os, sys
from mflow.state import StoreLocation, open_store
from mflow.state.base import Claim, Partition, this_host
from mflow.states import PartitionStatus
store = open_store(StoreLocation(sys.argv[1]))
claim = Claim("load", this_host(), os.getpid())
taken = []
while (part := store.claim_partition(claim, ["in"], "out")) is not None:
    taken.append(part.dataid)
    # The job's work; then its output is READY (a claimer that exits with its claims still
    # RUNNING is gone, and they are claimable again: the rule for crashed claimers).
    store.set_partition(Partition("out", part.dataid, PartitionStatus.READY, job="load"))
store.close()
print(json.dumps(taken))
"""


def test_concurrent_claimers_in_many_processes_take_each_partition_once(
    store: StateStore, store_url: str, open_at: Callable[[], StateStore]
) -> None:
    dataids = [f"{i:04d}" for i in range(120)]
    for dataid in dataids:
        store.set_partition(Partition("in", dataid, P.READY))
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, store_url], stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    import json

    taken: list[str] = []
    for claimer in claimers:
        out, _ = claimer.communicate(timeout=180)
        assert claimer.returncode == 0
        taken.extend(json.loads(out))
    assert sorted(taken) == dataids  # every partition, each exactly once
    assert {p.status for p in open_at().partitions("out")} == {P.READY}
