"""The ZooKeeper store's operations side (SPEC §11): task definitions, stop requests, runs whose
owner is gone, the DAGs a store knows, pruning. A mixin of `zookeeper.ZooKeeperStore`.

    <root>/meta                        {"schema_version", "store_id"}
    <root>/runs/<id>/defs/<n>          what the run's DAG was (mflow.plan.snapshot), in chunks
                                       (a znode holds at most 1 MB)
    <root>/runs/<id>/stop              {"by", "at"}: `mflow stop` from another host
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from mflow.errors import RunNotFound
from mflow.state.base import OWNER_GONE, DagSummary, RunRecord
from mflow.state.znodes import RESERVED, dumps, id_node, loads, node_name
from mflow.state.zookeeper_client import commit_writes, committed, zk_errors
from mflow.states import RunState

if TYPE_CHECKING:
    from kazoo.client import KazooClient

    from mflow.state.znodes import Znodes
    from mflow.state.zookeeper_lock import RunLocks

CHUNK = 900_000  # bytes per definitions node, under ZooKeeper's 1 MB


class ZooKeeperOperations:
    """Methods of `StateStore`'s operations section, for `ZooKeeperStore`."""

    if TYPE_CHECKING:
        client: KazooClient
        nodes: Znodes
        locks: RunLocks
        _known: dict[int, set[str]]

        def _ensure(self) -> None: ...

        def _read_run(self, run_id: int) -> tuple[RunRecord, dict[str, Any], Any]: ...

        def _read_runs(self, ids: list[int]) -> list[RunRecord]: ...

    _store_id: str | None = None

    @zk_errors
    def store_id(self) -> str:
        if self._store_id is None:
            self._ensure()
            path = self.nodes.path("meta")
            while True:
                data, stat = self.client.retry(self.client.get, path)
                value = loads(data)
                if value.get("store_id"):
                    break
                value["store_id"] = uuid.uuid4().hex
                try:
                    self.client.retry(self.client.set, path, dumps(value), stat.version)
                    break
                except BadVersionError:
                    continue  # another process wrote it: read it
            self._store_id = str(value["store_id"])
        return self._store_id

    def _defs(self, run_id: int) -> str:
        return f"{self.nodes.run(run_id)}/defs"

    @zk_errors
    def set_definitions(self, run_id: int, snapshot: bytes) -> None:
        self._ensure()
        blob = snapshot
        try:
            self.client.retry(self.client.delete, self._defs(run_id), recursive=True)
        except NoNodeError:
            pass
        ops = [(self._defs(run_id), b"", False)]
        for n, start in enumerate(range(0, len(blob), CHUNK)):
            ops.append((f"{self._defs(run_id)}/{n:04d}", blob[start : start + CHUNK], False))
        commit_writes(self.client, ops)

    @zk_errors
    def definitions(self, run_id: int) -> bytes | None:
        self._ensure()
        try:
            names = sorted(self.client.retry(self.client.get_children, self._defs(run_id)))
        except NoNodeError:
            return None
        blob = b"".join(
            self.client.retry(self.client.get, f"{self._defs(run_id)}/{name}")[0] for name in names
        )
        return blob

    @zk_errors
    def remove_tasks(self, run_id: int, task_ids: Iterable[str]) -> None:
        self._ensure()
        tasks = self.nodes.tasks(run_id)
        for task_id in task_ids:
            try:
                self.client.retry(self.client.delete, f"{tasks}/{node_name(task_id)}")
            except NoNodeError:
                pass
        self._known.pop(run_id, None)

    @zk_errors
    def request_stop(self, run_id: int, by: str) -> None:
        self._ensure()
        self._read_run(run_id)  # RunNotFound for an unknown run
        value = dumps({"by": by, "at": time.time()})
        path = f"{self.nodes.run(run_id)}/stop"
        try:
            self.client.retry(self.client.create, path, value)
        except NodeExistsError:
            self.client.retry(self.client.set, path, value)

    @zk_errors
    def stop_requested(self, run_id: int) -> str | None:
        try:
            data, _ = self.client.retry(self.client.get, f"{self.nodes.run(run_id)}/stop")
        except NoNodeError:
            return None
        return str(loads(data).get("by") or "?")

    @zk_errors
    def mark_gone(self, run: RunRecord, at: float) -> bool:
        self._ensure()
        try:
            current, value, stat = self._read_run(run.id)
        except RunNotFound:
            return False
        if (
            current.status is not RunState.RUNNING
            or current.pid != run.pid
            or current.heartbeat_at > run.heartbeat_at + 0.001
        ):
            return False  # resumed, ended or beaten since it was read
        value.update(status=RunState.FAILED.value, ended_at=at, note=OWNER_GONE)
        txn = self.client.transaction()
        txn.set_data(self.nodes.run(run.id), dumps(value), stat.version)
        self.locks.release(txn, current.dag, run.id)
        if not committed(txn.commit()):
            return False
        self.locks.released(current.dag, run.id)
        return True

    @zk_errors
    def dags(self) -> list[DagSummary]:
        self._ensure()
        found = []
        for name in sorted(self.client.retry(self.client.get_children, self.nodes.path("dags"))):
            index = self.nodes.path("dags", name)
            ids = sorted(
                (int(n) for n in self.client.retry(self.client.get_children, index)),
                reverse=True,
            )
            for run in self._read_runs(ids[:10]):  # the newest that still exists
                found.append(DagSummary(run.dag, len(ids), run))
                break
        return sorted(found, key=lambda d: d.dag)

    @zk_errors
    def ended_before(self, at: float, dag: str | None = None) -> list[RunRecord]:
        self._ensure()
        parent = self.nodes.dag_index(dag) if dag is not None else self.nodes.path("runs")
        try:
            names = self.client.retry(self.client.get_children, parent)
        except NoNodeError:
            return []
        ids = sorted(int(n) for n in names if n.isdigit() and n != RESERVED)
        return [
            run
            for run in self._read_runs(ids)
            if run.status is not RunState.RUNNING and run.ended_at is not None and run.ended_at < at
        ]

    @zk_errors
    def delete_runs(self, run_ids: Iterable[int]) -> None:
        self._ensure()
        for run_id in run_ids:
            try:
                run = self._read_run(run_id)[0]
            except RunNotFound:
                continue
            for path in (
                self.nodes.path("dags", node_name(run.dag), id_node(run_id)),
                self.nodes.children(run_id),
                *(
                    [f"{self.nodes.children(run.parent_run_id)}/{id_node(run_id)}"]
                    if run.parent_run_id is not None
                    else []
                ),
                self.nodes.run(run_id),
            ):
                try:
                    self.client.retry(self.client.delete, path, recursive=True)
                except NoNodeError:
                    pass
            self._known.pop(run_id, None)
