"""The ZooKeeper store's run lock: one EPHEMERAL znode per DAG, `<root>/locks/<dag>`.

The lock is ephemeral: when its owner's session ends (the process died) it vanishes by
itself. The run it named is then still RUNNING in `runs/`; the next run to take the lock
marks such orphans FAILED (it walks the DAG index newest first and stops at the first run
that is not RUNNING). A holder whose session is still alive but whose owner is gone (same
host and pid dead, or no heartbeat for STALE_AFTER) is released as in the SQL store, by
compare-and-set on the znode versions read.

Session loss: kazoo reconnects by itself. If the session was LOST its ephemeral locks are
gone; on reconnection the store re-creates the lock of each run it holds, best effort (if
another run took the lock meanwhile, a warning is logged and that run keeps it).

`RunLocks` only adds its operations to the store's transactions; the store commits them
together with the run nodes they go with.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from kazoo.client import KazooState
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from mflow.errors import RunAlreadyActive
from mflow.state.base import OWNER_GONE, RunRecord, is_stale, this_host
from mflow.state.znodes import Znodes, dumps, loads, run_from_value
from mflow.state.zookeeper_client import committed
from mflow.states import RunState

if TYPE_CHECKING:
    from kazoo.client import KazooClient, TransactionRequest
    from kazoo.protocol.states import ZnodeStat

log = logging.getLogger(__name__)


class RunLocks:
    """The run locks of one store: taken, released, freed when stale, re-taken after a loss."""

    def __init__(self, client: KazooClient, nodes: Znodes) -> None:
        self.client = client
        self.nodes = nodes
        self.held: dict[str, int] = {}  # dag -> id of the run whose lock this store holds
        self._session_lost = False
        client.add_listener(self._on_state)

    def close(self) -> None:
        self.client.remove_listener(self._on_state)

    # ------------------------------------------------------------------ in the store's transactions

    def value(self, run_id: int) -> bytes:
        return dumps({"run_id": run_id, "host": this_host(), "pid": os.getpid()})

    def take(self, txn: TransactionRequest, dag: str, run_id: int) -> None:
        """Add creating the DAG's lock, naming `run_id`, to a transaction."""
        txn.create(self.nodes.lock(dag), self.value(run_id), ephemeral=True)

    def taken(self, dag: str, run_id: int) -> None:
        """The transaction that took the lock committed: hold it, fail the runs it orphaned."""
        self.held[dag] = run_id
        self.fail_orphans(dag, run_id)

    def release(self, txn: TransactionRequest, dag: str, run_id: int) -> None:
        """Add deleting the DAG's lock to a transaction, if `run_id` holds it."""
        lock_path = self.nodes.lock(dag)
        try:
            lock_data, lock_stat = self.client.retry(self.client.get, lock_path)
            if int(loads(lock_data)["run_id"]) == run_id:
                txn.delete(lock_path, version=lock_stat.version)
        except NoNodeError:
            pass

    def released(self, dag: str, run_id: int) -> None:
        """The transaction that released the lock committed."""
        if self.held.get(dag) == run_id:
            del self.held[dag]

    # ------------------------------------------------------------------ stale holders, orphans

    def free(self, dag: str, own_run_id: int | None = None) -> ZnodeStat | None:
        """Make the DAG's lock takeable; the lock's stat when `own_run_id` already holds it.

        Raises RunAlreadyActive for a live holder. A stale one is marked FAILED and its lock
        deleted in one transaction, both conditional on the versions we read.
        """
        try:
            data, lock_stat = self.client.retry(self.client.get, self.nodes.lock(dag))
        except NoNodeError:
            return None
        holder_id = int(loads(data)["run_id"])
        if holder_id == own_run_id:
            return lock_stat
        txn = self.client.transaction()
        holder: RunRecord | None
        try:
            run_data, run_stat = self.client.retry(self.client.get, self.nodes.run(holder_id))
        except NoNodeError:
            holder = None
        else:
            raw = loads(run_data)
            holder = run_from_value(holder_id, raw)
        marked = False
        if holder is not None and holder.status is RunState.RUNNING:
            marked = True
            if not is_stale(holder):
                raise RunAlreadyActive(dag, holder.id, holder.host, holder.pid)
            raw.update(status=RunState.FAILED.value, ended_at=time.time(), note=OWNER_GONE)
            txn.set_data(self.nodes.run(holder_id), dumps(raw), run_stat.version)
        txn.delete(self.nodes.lock(dag), version=lock_stat.version)
        results = txn.commit()
        # If that failed, someone else moved first: the caller's next round sees what they did.
        if marked and holder and committed(results):
            log.warning(
                "run %s of DAG '%s' (host %s, pid %s) is gone: marked FAILED, lock released",
                holder.id, dag, holder.host, holder.pid,
            )  # fmt: skip
        return None

    def fail_orphans(self, dag: str, own_run_id: int) -> None:
        """We hold the lock, so any other locked RUNNING run of the DAG lost its owner."""
        index = self.nodes.dag_index(dag)
        for name in sorted(self.client.retry(self.client.get_children, index), reverse=True):
            run_id = int(name)
            if run_id == own_run_id:
                continue
            try:
                data, stat = self.client.retry(self.client.get, self.nodes.run(run_id))
            except NoNodeError:
                continue
            value = loads(data)
            if value.get("status") != RunState.RUNNING.value:
                break
            if not value.get("locked"):
                continue  # a --allow-concurrent run never held the lock
            value.update(status=RunState.FAILED.value, ended_at=time.time(), note=OWNER_GONE)
            try:
                self.client.set(self.nodes.run(run_id), dumps(value), version=stat.version)
                log.warning("run %s of DAG '%s' lost its owner: marked FAILED", run_id, dag)
            except (BadVersionError, NoNodeError):
                pass

    def owner_gone(self, run: RunRecord, raw: dict[str, Any]) -> bool:
        """The RUNNING `run` (whose node value is `raw`) has no live owner any more."""
        if is_stale(run):
            return True
        if not raw.get("locked"):
            return False
        try:
            data, _ = self.client.retry(self.client.get, self.nodes.lock(run.dag))
        except NoNodeError:
            return True  # its ephemeral lock vanished with its session
        return int(loads(data)["run_id"]) != run.id

    # ------------------------------------------------------------------ session loss

    def _on_state(self, state: str) -> None:
        # Runs on kazoo's event thread, which must not block: hand the work to a new one.
        if state == KazooState.LOST:
            self._session_lost = True
        elif state == KazooState.CONNECTED and self._session_lost:
            self._session_lost = False  # a new session: its ephemeral nodes are gone
            if self.held:
                self.client.handler.spawn(self._relock)

    def _relock(self) -> None:
        for dag, run_id in list(self.held.items()):
            data = self.value(run_id)
            try:
                self.client.create(self.nodes.lock(dag), data, ephemeral=True)
                log.warning("ZooKeeper session was lost; re-took the lock of run %s", run_id)
            except NodeExistsError:
                holder = loads(self.client.get(self.nodes.lock(dag))[0]).get("run_id")
                if holder == run_id:
                    continue
                log.warning(
                    "ZooKeeper session was lost and another run took the lock of DAG '%s' "
                    "while run %s was disconnected",
                    dag, run_id,
                )  # fmt: skip
            except Exception:  # best effort: the run goes on without its lock
                log.exception("could not re-take the lock of run %s", run_id)
