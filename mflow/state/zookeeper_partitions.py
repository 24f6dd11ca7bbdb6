"""The ZooKeeper store's partitions (SPEC §6): datasets, partition statuses, exactly-once claims.

    <root>/datasets/<name>                  {"fields": {...}, "updated_at"}
    <root>/partitions/<dataset>/<dataid>    {"status", "job", "run_id", "host", "pid", ...}
    <root>/ready/<dataset>/<dataid>         exists while that partition is READY
    <root>/resubmit/<dataset>/<dataid>      exists while it is RESUBMIT

The two index trees let a claimer find candidates from child names alone (no partition node
read): the dataids READY in every input, less the output's partitions that are not RESUBMIT.
Every status change writes the partition node and its index nodes in one transaction. A claim
is the create of the output's partition node as RUNNING (or, for a RESUBMIT one, a versioned
set that also deletes its index node): ZooKeeper lets exactly one claimer succeed. A mixin of
`zookeeper.ZooKeeperStore`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from mflow.errors import StateStoreError
from mflow.state.base import Claim, Dataset, Partition, is_stale_owner
from mflow.state.znodes import dumps, loads, node_name
from mflow.state.zookeeper_client import committed, zk_errors
from mflow.states import PartitionStatus

if TYPE_CHECKING:
    from kazoo.client import KazooClient, TransactionRequest

    from mflow.state.znodes import Znodes

_INDEXES = {PartitionStatus.READY: "ready", PartitionStatus.RESUBMIT: "resubmit"}


class ZooKeeperPartitions:
    """Methods of `StateStore`'s partitions section, for `ZooKeeperStore`."""

    if TYPE_CHECKING:
        client: KazooClient
        nodes: Znodes

        def _ensure(self) -> None: ...

    def _part(self, dataset: str, dataid: str | None = None) -> str:
        base = self.nodes.path("partitions", node_name(dataset))
        return base if dataid is None else f"{base}/{node_name(dataid)}"

    def _index(self, kind: str, dataset: str, dataid: str | None = None) -> str:
        base = self.nodes.path(kind, node_name(dataset))
        return base if dataid is None else f"{base}/{node_name(dataid)}"

    def _names(self, path: str) -> list[str]:
        try:
            return [unquote(n) for n in self.client.retry(self.client.get_children, path)]
        except NoNodeError:
            return []

    def _prepare(self, dataset: str) -> None:
        for path in (self._part(dataset), *(self._index(k, dataset) for k in _INDEXES.values())):
            self.client.retry(self.client.ensure_path, path)

    @zk_errors
    def put_dataset(self, dataset: Dataset) -> bool:
        self._ensure()
        path = self.nodes.path("datasets", node_name(dataset.name))
        value = dumps(
            {"name": dataset.name, "fields": dict(dataset.fields), "updated_at": time.time()}
        )
        self.client.retry(self.client.ensure_path, self.nodes.path("datasets"))
        try:
            self.client.retry(self.client.create, path, value)
            return True
        except NodeExistsError:
            self.client.retry(self.client.set, path, value)
            return False

    @zk_errors
    def datasets(self) -> list[Dataset]:
        self._ensure()
        found = []
        for name in sorted(self._names(self.nodes.path("datasets"))):
            try:
                data, _ = self.client.retry(
                    self.client.get, self.nodes.path("datasets", node_name(name))
                )
            except NoNodeError:
                continue
            value = loads(data)
            found.append(Dataset(name, value.get("fields", {}), value.get("updated_at", 0.0)))
        return found

    @zk_errors
    def set_partition(self, partition: Partition) -> None:
        self._ensure()
        self._prepare(partition.dataset)
        now = time.time()
        value = _value(partition, now)
        path = self._part(partition.dataset, partition.dataid)
        for _ in range(10):  # another writer between our read and our write: read again
            try:
                data, stat = self.client.retry(self.client.get, path)
                old: PartitionStatus | None = PartitionStatus(loads(data)["status"])
            except NoNodeError:
                stat, old = None, None
            txn = self.client.transaction()
            if stat is None:
                txn.create(path, value)
            else:
                txn.set_data(path, value, stat.version)
            self._move_index(txn, partition.dataset, partition.dataid, old, partition.status)
            results = txn.commit()
            if committed(results):
                return
        raise StateStoreError(
            f"cannot set partition {partition.dataset} {partition.dataid}: {results}"
        )

    def _move_index(
        self,
        txn: TransactionRequest,
        dataset: str,
        dataid: str,
        old: PartitionStatus | None,
        new: PartitionStatus,
    ) -> None:
        if old == new:
            return
        if old in _INDEXES:
            txn.delete(self._index(_INDEXES[old], dataset, dataid))
        if new in _INDEXES:
            txn.create(self._index(_INDEXES[new], dataset, dataid))

    @zk_errors
    def partitions(
        self, dataset: str | None = None, status: PartitionStatus | None = None
    ) -> list[Partition]:
        self._ensure()
        names = (
            [dataset] if dataset is not None else sorted(self._names(self.nodes.path("partitions")))
        )
        found = []
        for name in names:
            ids = sorted(self._names(self._part(name)))
            pending = [(i, self.client.get_async(self._part(name, i))) for i in ids]
            for dataid, result in pending:
                try:
                    data, _ = result.get()
                except NoNodeError:
                    continue
                part = _partition(name, dataid, loads(data))
                if status is None or part.status is status:
                    found.append(part)
        return found

    @zk_errors
    def heartbeat_partition(self, dataset: str, dataid: str, claim: Claim) -> None:
        path = self._part(dataset, dataid)
        try:
            data, stat = self.client.retry(self.client.get, path)
        except NoNodeError:
            return
        value = loads(data)
        if value.get("host") != claim.host or value.get("pid") != claim.pid:
            return
        value["heartbeat_at"] = time.time()
        try:
            self.client.retry(self.client.set, path, dumps(value), stat.version)
        except BadVersionError:
            pass  # changed meanwhile (finished, released): nothing to keep alive

    @zk_errors
    def claim_partition(
        self, claim: Claim, inputs: Sequence[str], output: str, dataid: str | None = None
    ) -> Partition | None:
        self._ensure()
        self._prepare(output)
        self._release_gone_claims(output)
        for candidate in self._candidates(inputs, output, dataid):
            taken = self._take(claim, output, candidate)
            if taken is not None:
                return taken
        return None

    def _candidates(self, inputs: Sequence[str], output: str, dataid: str | None) -> list[str]:
        resubmit = set(self._names(self._index("resubmit", output)))
        taken = set(self._names(self._part(output))) - resubmit
        if not inputs:
            return [dataid] if dataid is not None and dataid not in taken else []
        ready = set(self._names(self._index("ready", inputs[0])))
        for other in inputs[1:]:
            ready &= set(self._names(self._index("ready", other)))
        if dataid is not None:
            ready &= {dataid}
        return sorted(ready - taken)

    def _take(self, claim: Claim, output: str, dataid: str) -> Partition | None:
        now = time.time()
        part = Partition(
            output, dataid, PartitionStatus.RUNNING, claim.job, None, claim.host, claim.pid,
            now, now,
        )  # fmt: skip
        path = self._part(output, dataid)
        try:
            data, stat = self.client.retry(self.client.get, path)
        except NoNodeError:
            try:
                self.client.retry(self.client.create, path, _value(part, now))
                return part
            except NodeExistsError:
                return None  # another claimer's create came first
        if loads(data).get("status") != PartitionStatus.RESUBMIT.value:
            return None
        txn = self.client.transaction()
        txn.set_data(path, _value(part, now), stat.version)
        txn.delete(self._index("resubmit", output, dataid))
        return part if committed(txn.commit()) else None

    def _release_gone_claims(self, output: str) -> None:
        """RUNNING output partitions whose claimer is gone become claimable (RESUBMIT)."""
        for part in self.partitions(output, PartitionStatus.RUNNING):
            if not is_stale_owner(part.host or "", part.pid or 0, part.heartbeat_at):
                continue
            path = self._part(output, part.dataid)
            try:
                data, stat = self.client.retry(self.client.get, path)
            except NoNodeError:
                continue
            value = loads(data)
            if value.get("heartbeat_at", 0) > part.heartbeat_at + 0.001:
                continue
            value.update(status=PartitionStatus.RESUBMIT.value, updated_at=time.time())
            txn = self.client.transaction()
            txn.set_data(path, dumps(value), stat.version)
            txn.create(self._index("resubmit", output, part.dataid))
            txn.commit()


def _value(part: Partition, now: float) -> bytes:
    return dumps(
        {
            "status": PartitionStatus(part.status).value,
            "job": part.job,
            "run_id": part.run_id,
            "host": part.host,
            "pid": part.pid,
            "updated_at": now,
            "heartbeat_at": now,
        }
    )


def _partition(dataset: str, dataid: str, value: dict[str, Any]) -> Partition:
    return Partition(
        dataset=dataset,
        dataid=dataid,
        status=PartitionStatus(value["status"]),
        job=value.get("job"),
        run_id=value.get("run_id"),
        host=value.get("host"),
        pid=value.get("pid"),
        updated_at=value.get("updated_at", 0.0),
        heartbeat_at=value.get("heartbeat_at", 0.0),
    )
