"""The SQL store's recurring jobs (SPEC §5): jobs, slots, the leader's lease, the members.

The fire key is the primary key of `mflow_fires` (job, kind, slot): a slot is claimed by the
INSERT, at most once whatever happens. Fencing: a leader's claim first updates the lease row
*where the epoch is still its own*, in the same transaction; after a takeover that matches
nothing and the claim is refused, so a leader paused by SIGSTOP or a long GC that wakes up
claims nothing. On PostgreSQL and Oracle the update also locks the lease row until the claim
commits, so a takeover cannot slip between the check and the insert; SQLite's write
transactions run one at a time (BEGIN IMMEDIATE). Lease times are this host's clock: the
schedulers' hosts must keep their clocks in sync (NTP), as every lease-based system asks.
A mixin of `sql.SqlStore`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mflow.state.base import Fire, JobRecord, Lease, Member
from mflow.state.ddl import fires, from_db_time, jobs, lease, members, to_db_time

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Row

LEASE = "scheduler"
MEMBER_GONE_AFTER = 30.0  # seconds without a heartbeat: a member is gone


class SqlJobs:
    """Methods of `StateStore`'s jobs section, for `SqlStore`."""

    if TYPE_CHECKING:

        def _ensure_schema(self) -> None: ...

        def _transaction(self, *, write: bool = True) -> AbstractContextManager[Connection]: ...

    # ------------------------------------------------------------------ jobs

    def put_job(self, job: JobRecord, *, create: bool) -> bool:
        self._ensure_schema()
        now = to_db_time(time.time())
        values = {
            "document": json.dumps(dict(job.document)),
            "base_dir": job.base_dir,
            "enabled": 1 if job.enabled else 0,
            "updated_at": now,
        }
        try:
            with self._transaction() as conn:
                if create:
                    conn.execute(sa.insert(jobs).values(name=job.name, created_at=now, **values))
                    return True
                return bool(
                    conn.execute(
                        sa.update(jobs).where(jobs.c.name == job.name).values(values)
                    ).rowcount
                )
        except sa.exc.IntegrityError:
            return False

    def get_job(self, name: str) -> JobRecord | None:
        self._ensure_schema()
        with self._transaction(write=False) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.name == name)).first()
        return None if row is None else _job(row)

    def list_jobs(self) -> list[JobRecord]:
        self._ensure_schema()
        with self._transaction(write=False) as conn:
            return [_job(row) for row in conn.execute(sa.select(jobs).order_by(jobs.c.name))]

    def delete_job(self, name: str) -> bool:
        self._ensure_schema()
        with self._transaction() as conn:
            return bool(conn.execute(sa.delete(jobs).where(jobs.c.name == name)).rowcount)

    def set_job_enabled(self, name: str, enabled: bool) -> bool:
        self._ensure_schema()
        with self._transaction() as conn:
            changed = conn.execute(
                sa.update(jobs)
                .where(jobs.c.name == name)
                .values(enabled=1 if enabled else 0, updated_at=to_db_time(time.time()))
            ).rowcount
        return bool(changed)

    # ------------------------------------------------------------------ slots

    def claim_fire(self, fire: Fire) -> bool:
        self._ensure_schema()
        try:
            with self._transaction() as conn:
                if fire.epoch is not None:
                    still = conn.execute(
                        sa.update(lease)
                        .where(lease.c.name == LEASE, lease.c.epoch == fire.epoch)
                        .values(epoch=fire.epoch)
                    ).rowcount
                    if still != 1:
                        return False  # fenced: a newer leader exists
                conn.execute(sa.insert(fires).values(_fire_values(fire)))
            return True
        except sa.exc.IntegrityError:
            return False  # that slot was claimed before

    def claim_fires(self, many: Sequence[Fire]) -> list[bool]:
        """All in one transaction (one fence check, one commit) when none was claimed before
        and they share one epoch; else one by one."""
        epochs = {f.epoch for f in many}
        if len(many) < 2 or len(epochs) != 1:
            return [self.claim_fire(f) for f in many]
        self._ensure_schema()
        (epoch,) = epochs
        try:
            with self._transaction() as conn:
                if (
                    epoch is not None
                    and conn.execute(
                        sa.update(lease)
                        .where(lease.c.name == LEASE, lease.c.epoch == epoch)
                        .values(epoch=epoch)
                    ).rowcount
                    != 1
                ):
                    return [False] * len(many)  # fenced
                conn.execute(sa.insert(fires), [_fire_values(f) for f in many])
            return [True] * len(many)
        except sa.exc.IntegrityError:
            return [self.claim_fire(f) for f in many]  # some were claimed before

    def set_fire_run(self, fire: Fire, run_id: int | None, reason: str | None = None) -> None:
        self._ensure_schema()
        values: dict[str, Any] = {"run_id": run_id}
        if reason is not None:
            values["reason"] = reason[:1000]
        with self._transaction() as conn:
            conn.execute(
                sa.update(fires)
                .where(fires.c.job == fire.job, fires.c.kind == fire.kind)
                .where(fires.c.slot == to_db_time(fire.slot))
                .values(values)
            )

    def fires(self, job: str, limit: int = 20, kind: str | None = None) -> list[Fire]:
        self._ensure_schema()
        query = sa.select(fires).where(fires.c.job == job)
        if kind is not None:
            query = query.where(fires.c.kind == kind)
        query = query.order_by(fires.c.slot.desc()).limit(limit)
        with self._transaction(write=False) as conn:
            return [_fire(row) for row in conn.execute(query)]

    def last_slots(self, kind: str = "scheduled") -> dict[str, float]:
        self._ensure_schema()
        # One primary-key probe per job (newest slot of job, kind), not a scan of every fire.
        newest = (
            sa.select(sa.func.max(fires.c.slot))
            .where(fires.c.job == jobs.c.name, fires.c.kind == kind)
            .scalar_subquery()
        )
        with self._transaction(write=False) as conn:
            rows = conn.execute(sa.select(jobs.c.name, newest)).all()
        return {name: from_db_time(slot) or 0.0 for name, slot in rows if slot is not None}

    # ------------------------------------------------------------------ leadership

    def acquire_lease(self, holder: str, hostname: str, ttl: float) -> Lease | None:
        self._ensure_schema()
        now = time.time()
        for _ in range(3):
            try:
                with self._transaction() as conn:
                    row = conn.execute(sa.select(lease).where(lease.c.name == LEASE)).first()
                    if row is None:
                        epoch, since = 1, now
                        conn.execute(
                            sa.insert(lease).values(
                                name=LEASE,
                                holder=holder,
                                hostname=hostname,
                                epoch=epoch,
                                since=to_db_time(now),
                                expires_at=to_db_time(now + ttl),
                            )
                        )
                        return Lease(holder, hostname, epoch, since, now + ttl)
                    mine = row.holder == holder
                    expired = (from_db_time(row.expires_at) or 0.0) < now
                    if not mine and not expired:
                        return None
                    epoch = int(row.epoch) if mine and not expired else int(row.epoch) + 1
                    since = (from_db_time(row.since) or now) if epoch == row.epoch else now
                    changed = conn.execute(
                        sa.update(lease)
                        .where(lease.c.name == LEASE, lease.c.epoch == row.epoch)
                        .values(
                            holder=holder,
                            hostname=hostname,
                            epoch=epoch,
                            since=to_db_time(since),
                            expires_at=to_db_time(now + ttl),
                        )
                    ).rowcount
                    if changed == 1:
                        return Lease(holder, hostname, epoch, since, now + ttl)
            except sa.exc.IntegrityError:
                continue  # two first leaders at once: look again
        return None

    def renew_lease(self, held: Lease, ttl: float) -> bool:
        self._ensure_schema()
        with self._transaction() as conn:
            changed = conn.execute(
                sa.update(lease)
                .where(lease.c.name == LEASE, lease.c.epoch == held.epoch)
                .where(lease.c.holder == held.holder)
                .values(expires_at=to_db_time(time.time() + ttl))
            ).rowcount
        return changed == 1

    def release_lease(self, held: Lease) -> None:
        self._ensure_schema()
        with self._transaction() as conn:
            conn.execute(
                sa.update(lease)
                .where(lease.c.name == LEASE, lease.c.epoch == held.epoch)
                .values(expires_at=to_db_time(0.0))
            )

    def leader(self) -> Lease | None:
        self._ensure_schema()
        with self._transaction(write=False) as conn:
            row = conn.execute(sa.select(lease).where(lease.c.name == LEASE)).first()
        if row is None or (from_db_time(row.expires_at) or 0.0) < time.time():
            return None
        return Lease(
            row.holder, row.hostname or "", int(row.epoch),
            from_db_time(row.since) or 0.0, from_db_time(row.expires_at) or 0.0,
        )  # fmt: skip

    # ------------------------------------------------------------------ members

    def join(self, member: Member) -> None:
        self._ensure_schema()
        values = {
            "hostname": member.hostname,
            "pid": member.pid,
            "heartbeat_at": to_db_time(member.heartbeat_at),
        }
        with self._transaction() as conn:
            changed = conn.execute(
                sa.update(members).where(members.c.name == member.name).values(values)
            ).rowcount
            if not changed:
                conn.execute(
                    sa.insert(members).values(
                        name=member.name, since=to_db_time(member.since), **values
                    )
                )
            gone = to_db_time(time.time() - MEMBER_GONE_AFTER * 10)
            conn.execute(sa.delete(members).where(members.c.heartbeat_at < gone))

    def leave(self, name: str) -> None:
        self._ensure_schema()
        with self._transaction() as conn:
            conn.execute(sa.delete(members).where(members.c.name == name))

    def members(self) -> list[Member]:
        self._ensure_schema()
        alive = to_db_time(time.time() - MEMBER_GONE_AFTER)
        query = sa.select(members).where(members.c.heartbeat_at >= alive).order_by(members.c.name)
        with self._transaction(write=False) as conn:
            return [
                Member(
                    r.name,
                    r.hostname or "",
                    int(r.pid or 0),
                    from_db_time(r.since) or 0.0,
                    from_db_time(r.heartbeat_at) or 0.0,
                )
                for r in conn.execute(query)
            ]


def _fire_values(fire: Fire) -> dict[str, Any]:
    return {
        "job": fire.job,
        "kind": fire.kind,
        "slot": to_db_time(fire.slot),
        "outcome": fire.outcome,
        "reason": fire.reason[:1000] if fire.reason else None,
        "run_id": fire.run_id,
        "host": fire.host,
        "epoch": fire.epoch,
        "at": to_db_time(fire.at or time.time()),
    }


def _fire(row: Row[Any]) -> Fire:
    return Fire(
        job=row.job,
        slot=from_db_time(row.slot) or 0.0,
        kind=row.kind,
        outcome=row.outcome,
        reason=row.reason,
        run_id=row.run_id,
        host=row.host,
        epoch=row.epoch,
        at=from_db_time(row.at) or 0.0,
    )


def _job(row: Row[Any]) -> JobRecord:
    return JobRecord(
        name=row.name,
        document=json.loads(row.document),
        base_dir=row.base_dir or "",
        enabled=bool(row.enabled),
        created_at=from_db_time(row.created_at) or 0.0,
        updated_at=from_db_time(row.updated_at) or 0.0,
    )
