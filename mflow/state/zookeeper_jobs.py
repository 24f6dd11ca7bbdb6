"""The ZooKeeper store's recurring jobs (SPEC §5), in TgFlow's layout where it has one.

    <root>/jobs/<name>                  {"document", "base_dir", "enabled", ...}
    <root>/fires/<job>/<kind>-<slot>    a slot's outcome; the slot in microseconds, 17 digits
    <root>/scheduler/epoch              its data version is the leader's epoch
    <root>/scheduler/election/...       kazoo's Election recipe (mflow.scheduler.leadership)
    <root>/leader                       EPHEMERAL {"hostname", "timestamp", "name", "epoch"}
    <root>/followers/<name>             EPHEMERAL {"hostname", "timestamp", "pid", "since"}

Who leads is decided by the Election recipe; the elected scheduler then takes a new epoch
(`acquire_lease`: a versioned write of the epoch node) and claims each slot with a transaction
that checks the epoch node's version and creates the slot's node: after a takeover the check
fails, so a leader that slept through it claims nothing. A mixin of `ZooKeeperStore`.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError

from mflow.state.base import Fire, JobRecord, Lease, Member
from mflow.state.znodes import dumps, loads, node_name
from mflow.state.zookeeper_client import answer, zk_errors

if TYPE_CHECKING:
    from kazoo.client import KazooClient

    from mflow.state.znodes import Znodes


def slot_node(fire: Fire) -> str:
    return f"{fire.kind}-{round(fire.slot * 1_000_000):017d}"


def slot_of(name: str) -> tuple[str, int]:
    """A slot node's name -> (kind, slot in microseconds): `slot_node` read back."""
    kind, _, micros = name.rpartition("-")
    return kind, int(micros)


class ZooKeeperJobs:
    """Methods of `StateStore`'s jobs section, for `ZooKeeperStore`."""

    if TYPE_CHECKING:
        client: KazooClient
        nodes: Znodes

        def _ensure(self) -> None: ...

    def _job(self, name: str) -> str:
        return self.nodes.path("jobs", node_name(name))

    @property
    def epoch_node(self) -> str:
        return self.nodes.path("scheduler", "epoch")

    # ------------------------------------------------------------------ jobs

    @zk_errors
    def put_job(self, job: JobRecord, *, create: bool) -> bool:
        self._ensure()
        self.client.retry(self.client.ensure_path, self.nodes.path("jobs"))
        now = time.time()
        value = {
            "document": dict(job.document),
            "base_dir": job.base_dir,
            "enabled": job.enabled,
            "updated_at": now,
        }
        if create:
            try:
                self.client.retry(
                    self.client.create, self._job(job.name), dumps({**value, "created_at": now})
                )
                return True
            except NodeExistsError:
                return False
        try:
            data, _ = self.client.retry(self.client.get, self._job(job.name))
        except NoNodeError:
            return False
        value["created_at"] = loads(data).get("created_at", now)
        self.client.retry(self.client.set, self._job(job.name), dumps(value))
        return True

    @zk_errors
    def get_job(self, name: str) -> JobRecord | None:
        self._ensure()
        try:
            data, _ = self.client.retry(self.client.get, self._job(name))
        except NoNodeError:
            return None
        return _job(name, loads(data))

    @zk_errors
    def list_jobs(self) -> list[JobRecord]:
        self._ensure()
        try:
            names = self.client.retry(self.client.get_children, self.nodes.path("jobs"))
        except NoNodeError:
            return []
        found = []
        for name in sorted(unquote(n) for n in names):
            job = self.get_job(name)
            if job is not None:
                found.append(job)
        return found

    @zk_errors
    def delete_job(self, name: str) -> bool:
        self._ensure()
        try:
            self.client.retry(self.client.delete, self._job(name))
            return True
        except NoNodeError:
            return False

    @zk_errors
    def set_job_enabled(self, name: str, enabled: bool) -> bool:
        self._ensure()
        while True:
            try:
                data, stat = self.client.retry(self.client.get, self._job(name))
            except NoNodeError:
                return False
            value = {**loads(data), "enabled": enabled, "updated_at": time.time()}
            try:
                self.client.retry(self.client.set, self._job(name), dumps(value), stat.version)
                return True
            except BadVersionError:
                continue

    # ------------------------------------------------------------------ slots

    def _fires(self, job: str) -> str:
        return self.nodes.path("fires", node_name(job))

    @zk_errors
    def claim_fire(self, fire: Fire) -> bool:
        self._ensure()
        self.client.retry(self.client.ensure_path, self._fires(fire.job))
        value = dumps(_fire_value(fire))
        path = f"{self._fires(fire.job)}/{slot_node(fire)}"
        if fire.epoch is None:
            try:
                self.client.retry(self.client.create, path, value)
                return True
            except NodeExistsError:
                return False
        txn = self.client.transaction()
        txn.check(self.epoch_node, version=fire.epoch)
        txn.create(path, value)
        results = txn.commit()
        return not any(isinstance(r, Exception) for r in results)

    @zk_errors
    def set_fire_run(self, fire: Fire, run_id: int | None, reason: str | None = None) -> None:
        path = f"{self._fires(fire.job)}/{slot_node(fire)}"
        try:
            data, _ = self.client.retry(self.client.get, path)
        except NoNodeError:
            return
        value = {**loads(data), "run_id": run_id}
        if reason is not None:
            value["reason"] = reason[:1000]
        self.client.retry(self.client.set, path, dumps(value))

    @zk_errors
    def fires(self, job: str, limit: int = 20, kind: str | None = None) -> list[Fire]:
        self._ensure()
        try:
            names = self.client.retry(self.client.get_children, self._fires(job))
        except NoNodeError:
            return []
        keyed = []
        for name in names:
            node_kind, micros = slot_of(name)
            if kind is None or node_kind == kind:
                keyed.append((micros, node_kind, name))
        keyed.sort(reverse=True)
        pending = [
            (k, n, self.client.get_async(f"{self._fires(job)}/{name}"))
            for k, n, name in keyed[:limit]
        ]
        found = []
        for micros, node_kind, result in pending:
            try:
                data, _ = answer(result)
            except NoNodeError:
                continue
            found.append(_fire(job, node_kind, micros / 1_000_000, loads(data)))
        return found

    @zk_errors
    def last_slots(self, kind: str = "scheduled") -> dict[str, float]:
        self._ensure()
        top = self.nodes.path("fires")
        try:
            jobs = self.client.retry(self.client.get_children, top)
        except NoNodeError:
            return {}
        asked = [(name, self.client.get_children_async(f"{top}/{name}")) for name in jobs]
        newest = {}
        for name, result in asked:  # a slot is in its node's name: no node is read
            try:
                slots = [micros for k, micros in map(slot_of, answer(result)) if k == kind]
            except NoNodeError:
                continue
            if slots:
                newest[unquote(name)] = max(slots) / 1_000_000
        return newest

    # ------------------------------------------------------------------ leadership

    @zk_errors
    def acquire_lease(self, holder: str, hostname: str, ttl: float) -> Lease | None:
        """Called by the scheduler the Election recipe elected: a new epoch, and TgFlow's
        `<root>/leader` node. None when another scheduler's leader node is still there."""
        self._ensure()
        leader = self.nodes.path("leader")
        self.client.retry(self.client.ensure_path, self.epoch_node)
        try:
            data, _ = self.client.retry(self.client.get, leader)
            current = loads(data)
            if current.get("name") != holder:
                return None
            _, epoch = self.client.retry(self.client.get, self.epoch_node)
            if epoch.version == current.get("epoch"):  # still ours: nothing changes
                return Lease(holder, hostname, epoch.version, float(current.get("since", 0.0)))
        except NoNodeError:
            pass
        stat = self.client.retry(self.client.set, self.epoch_node, str(time.time()).encode())
        now = time.time()
        value = dumps(
            {
                "hostname": hostname,
                "timestamp": now,
                "name": holder,
                "epoch": stat.version,
                "since": now,
            }
        )
        try:
            self.client.retry(self.client.create, leader, value, ephemeral=True)
        except NodeExistsError:
            self.client.retry(self.client.set, leader, value)
        return Lease(holder, hostname, stat.version, now, 0.0)

    @zk_errors
    def renew_lease(self, held: Lease, ttl: float) -> bool:
        if not self.client.connected:
            return False
        try:
            _, stat = self.client.retry(self.client.get, self.epoch_node)
        except NoNodeError:
            return False
        return stat.version == held.epoch

    @zk_errors
    def release_lease(self, held: Lease) -> None:
        leader = self.nodes.path("leader")
        try:
            data, stat = self.client.retry(self.client.get, leader)
        except NoNodeError:
            return
        if loads(data).get("name") == held.holder:
            try:
                self.client.retry(self.client.delete, leader, stat.version)
            except (NoNodeError, BadVersionError):
                pass

    @zk_errors
    def leader(self) -> Lease | None:
        self._ensure()
        try:
            data, _ = self.client.retry(self.client.get, self.nodes.path("leader"))
        except NoNodeError:
            return None
        value = loads(data)
        return Lease(
            value.get("name", ""),
            value.get("hostname", ""),
            int(value.get("epoch", 0)),
            float(value.get("since", value.get("timestamp", 0.0))),
        )

    # ------------------------------------------------------------------ members

    @zk_errors
    def join(self, member: Member) -> None:
        self._ensure()
        self.client.retry(self.client.ensure_path, self.nodes.path("followers"))
        path = self.nodes.path("followers", node_name(member.name))
        value = dumps(
            {
                "hostname": member.hostname,
                "timestamp": member.heartbeat_at,
                "pid": member.pid,
                "since": member.since,
            }
        )
        try:
            self.client.retry(self.client.create, path, value, ephemeral=True)
        except NodeExistsError:
            self.client.retry(self.client.set, path, value)

    @zk_errors
    def leave(self, name: str) -> None:
        try:
            self.client.retry(self.client.delete, self.nodes.path("followers", node_name(name)))
        except NoNodeError:
            pass

    @zk_errors
    def members(self) -> list[Member]:
        self._ensure()

        try:
            names = self.client.retry(self.client.get_children, self.nodes.path("followers"))
        except NoNodeError:
            return []
        found = []
        for name in sorted(names):
            try:
                data, _ = self.client.retry(self.client.get, self.nodes.path("followers", name))
            except NoNodeError:
                continue
            value = loads(data)
            found.append(
                Member(
                    unquote(name),
                    value.get("hostname", ""),
                    int(value.get("pid", 0)),
                    float(value.get("since", 0.0)),
                    float(value.get("timestamp", 0.0)),
                )
            )
        return found


def _fire_value(fire: Fire) -> dict[str, Any]:
    return {
        "outcome": fire.outcome,
        "reason": fire.reason,
        "run_id": fire.run_id,
        "host": fire.host,
        "epoch": fire.epoch,
        "at": fire.at or time.time(),
        "pid": os.getpid(),
    }


def _fire(job: str, kind: str, slot: float, value: dict[str, Any]) -> Fire:
    return Fire(
        job=job,
        slot=slot,
        kind=kind,
        outcome=value.get("outcome", "FIRED"),
        reason=value.get("reason"),
        run_id=value.get("run_id"),
        host=value.get("host"),
        epoch=value.get("epoch"),
        at=float(value.get("at", 0.0)),
    )


def _job(name: str, value: dict[str, Any]) -> JobRecord:
    return JobRecord(
        name=name,
        document=value.get("document", {}),
        base_dir=value.get("base_dir", ""),
        enabled=bool(value.get("enabled", True)),
        created_at=float(value.get("created_at", 0.0)),
        updated_at=float(value.get("updated_at", 0.0)),
    )
