"""The state-store contract, partitions side (SPEC §6), on every backend: datasets, partition
statuses, and claims that never hand one partition to two claimers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from test_state_contract import dead_pid

from mflow.state import StoreLocation, open_store
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


def test_claims_go_on_in_order_when_partitions_arrive_change_or_are_taken_elsewhere(
    store: StateStore, open_at: Callable[[], StateStore]
) -> None:
    # One claimer (one store object) claims again and again, as `runjob --all` does, while
    # the partitions change under it: the smallest eligible dataid every time.
    ready(store, "in", "05", "06", "07", "08", "09")
    assert store.claim_partition(ME, ["in"], "out").dataid == "05"  # type: ignore[union-attr]
    ready(store, "in", "01")  # late input, older than what is left
    assert store.claim_partition(ME, ["in"], "out").dataid == "01"  # type: ignore[union-attr]
    store.set_partition(Partition("out", "05", P.RESUBMIT))  # an operator's reset
    assert store.claim_partition(ME, ["in"], "out").dataid == "05"  # type: ignore[union-attr]
    other = open_at()  # another claimer takes 06; 07's input is withdrawn
    assert other.claim_partition(ME, ["in"], "out").dataid == "06"  # type: ignore[union-attr]
    store.set_partition(Partition("in", "07", P.FAILED))
    assert store.claim_partition(ME, ["in"], "out").dataid == "08"  # type: ignore[union-attr]
    store.set_partition(Partition("out", "09", P.READY))  # produced by hand meanwhile
    assert store.claim_partition(ME, ["in"], "out") is None
    assert store.claim_partition(ME, ["in"], "out", dataid="07") is None
    assert [(p.dataid, p.status) for p in store.partitions("out")] == [
        ("01", P.RUNNING), ("05", P.RUNNING), ("06", P.RUNNING), ("08", P.RUNNING),
        ("09", P.READY),
    ]  # fmt: skip
    assert [p.dataid for p in store.partitions("out", P.RUNNING)] == ["01", "05", "06", "08"]


def test_zookeeper_keeps_every_child_listing_under_one_java_client_answer(zk_url: str) -> None:
    # ZooKeeper's Java clients (zkCli.sh among them) read at most 1 MB per answer
    # (jute.maxbuffer); kazoo reads more, but the store stays readable by every client: 6,000
    # dataids of 190 bytes (1.2 MB of names) are kept in buckets, listed and claimed in order.
    from concurrent.futures import ThreadPoolExecutor

    from kazoo.client import KazooClient

    store = open_store(StoreLocation(zk_url))
    try:
        store.init()
        dataids = [f"{i:05d}-" + "x" * 184 for i in range(6_000)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda d: ready(store, "big", d), reversed(dataids)))
        assert [p.dataid for p in store.partitions("big", P.READY)] == dataids
        assert store.claim_partition(ME, ["big"], "out").dataid == dataids[0]  # type: ignore[union-attr]
        assert store.claim_partition(ME, ["big"], "out").dataid == dataids[1]  # type: ignore[union-attr]
    finally:
        store.close()
    hosts, _, chroot = zk_url.removeprefix("zk://").partition("/")
    client = KazooClient(hosts=f"{hosts}/{chroot}")
    client.start()
    try:
        largest, level = 0, ["/"]
        for _ in range(4):  # <root>/<tree>/<dataset>/<bucket>: below are the dataid leaves
            asked = [(path, client.get_children_async(path)) for path in level]
            level = []
            for path, answer in asked:
                names = answer.get(timeout=30)
                largest = max(largest, sum(len(name.encode()) + 4 for name in names))
                level += [f"{path.rstrip('/')}/{name}" for name in names]
        assert 0 < largest < 100_000
    finally:
        client.stop()
        client.close()


def test_zookeeper_partitions_of_the_layout_before_buckets_are_upgraded(zk_url: str) -> None:
    # What mflow wrote before 2026-12-06: partition and index nodes right under the dataset
    # (one dataid, "0a", is also a bucket's name), no running index.
    import json

    from kazoo.client import KazooClient

    from mflow.state.znodes import BUCKETS

    store = open_store(StoreLocation(zk_url))
    store.init()
    store.close()
    hosts, _, chroot = zk_url.removeprefix("zk://").partition("/")
    client = KazooClient(hosts=f"{hosts}/{chroot}")
    client.start()
    try:
        old = {
            ("in", "01"): ("READY", None), ("in", "0a"): ("READY", None),
            ("in", "02"): ("READY", None), ("out", "01"): ("RUNNING", dead_pid()),
            ("out", "x%2Fy"): ("FAILED", None), ("out", "0a"): ("RESUBMIT", None),
        }  # fmt: skip
        for (dataset, name), (status, pid) in old.items():
            value = {"status": status, "job": "j", "run_id": None, "host": this_host(),
                     "pid": pid, "updated_at": 1.0, "heartbeat_at": time.time()}  # fmt: skip
            data = json.dumps(value).encode()
            client.create(f"/partitions/{dataset}/{name}", data, makepath=True)
            if status in ("READY", "RESUBMIT"):
                client.create(f"/{status.lower()}/{dataset}/{name}", makepath=True)
    finally:
        client.stop()
        client.close()

    store = open_store(StoreLocation(zk_url))
    try:
        listed = [(p.dataset, p.dataid, p.status) for p in store.partitions()]
        assert listed == [
            ("in", "01", P.READY), ("in", "02", P.READY), ("in", "0a", P.READY),
            ("out", "01", P.RUNNING), ("out", "0a", P.RESUBMIT), ("out", "x/y", P.FAILED),
        ]  # fmt: skip
        assert [p.dataid for p in store.partitions("in", P.READY)] == ["01", "02", "0a"]
        # 01's claimer is gone (its pid is dead): found through the rebuilt running index.
        assert store.claim_partition(ME, ["in"], "out").dataid == "01"  # type: ignore[union-attr]
        assert store.claim_partition(ME, ["in"], "out").dataid == "02"  # type: ignore[union-attr]
        assert store.claim_partition(ME, ["in"], "out").dataid == "0a"  # type: ignore[union-attr]
        assert store.claim_partition(ME, ["in"], "out") is None
        top = f"/{chroot}/partitions"
        assert store.client.get(top)[0] == b'{"partitions_layout": 2}'  # type: ignore[attr-defined]
        assert sorted(store.client.get_children(f"{top}/in")) == sorted(BUCKETS)  # type: ignore[attr-defined]
    finally:
        store.close()


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
