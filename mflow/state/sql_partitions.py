"""The SQL store's partitions (SPEC §6): datasets, partition statuses, exactly-once claims.

A claim is one transaction: find the smallest dataid whose input partitions are all READY and
whose output partition is absent or RESUBMIT, then insert the output row as RUNNING (or turn
RESUBMIT into RUNNING, compare-and-set). Two claimers can never both succeed for one dataid:
the output row's primary key (or the compare-and-set) lets one win, the other rolls back and
looks again. So that concurrent claimers do not all race for the same smallest dataid, the
candidate input row is read `FOR UPDATE SKIP LOCKED` on PostgreSQL and Oracle (each claimer
skips the rows another is claiming); SQLite's write transactions (`BEGIN IMMEDIATE`,
sql_engine.py) run one at a time anyway. A mixin of `sql.SqlStore`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mflow.state.base import Claim, Dataset, Partition, is_stale_owner
from mflow.state.ddl import datasets, from_db_time, partitions, to_db_time
from mflow.states import PartitionStatus

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine, Row

CLAIM_ATTEMPTS = 50  # a lost race costs one round; many claimers lose a few in a row


class SqlPartitions:
    """Methods of `StateStore`'s partitions section, for `SqlStore`."""

    if TYPE_CHECKING:
        engine: Engine

        def _ensure_schema(self) -> None: ...

        def _transaction(self, *, write: bool = True) -> AbstractContextManager[Connection]: ...

    def put_dataset(self, dataset: Dataset) -> bool:
        self._ensure_schema()
        values = {
            "fields": json.dumps(dict(dataset.fields), sort_keys=True),
            "updated_at": to_db_time(time.time()),
        }
        with self._transaction() as conn:
            changed = conn.execute(
                sa.update(datasets).where(datasets.c.name == dataset.name).values(values)
            ).rowcount
            if changed == 0:
                conn.execute(sa.insert(datasets).values(name=dataset.name, **values))
        return changed == 0

    def datasets(self) -> list[Dataset]:
        self._ensure_schema()
        with self._transaction(write=False) as conn:
            rows = conn.execute(sa.select(datasets).order_by(datasets.c.name)).all()
        return [
            Dataset(r.name, json.loads(r.fields), from_db_time(r.updated_at) or 0.0) for r in rows
        ]

    def set_partition(self, partition: Partition) -> None:
        self._ensure_schema()
        now = to_db_time(time.time())
        values = {
            "status": PartitionStatus(partition.status).value,
            "job": partition.job,
            "run_id": partition.run_id,
            "host": partition.host,
            "pid": partition.pid,
            "updated_at": now,
            "heartbeat_at": now,
        }
        key = (partitions.c.dataset == partition.dataset, partitions.c.dataid == partition.dataid)
        for _ in range(3):
            try:
                with self._transaction() as conn:
                    if conn.execute(sa.update(partitions).where(*key).values(values)).rowcount:
                        return
                    conn.execute(
                        sa.insert(partitions).values(
                            dataset=partition.dataset, dataid=partition.dataid, **values
                        )
                    )
                return
            except sa.exc.IntegrityError:
                continue  # inserted by another process meanwhile: update it

    def partitions(
        self, dataset: str | None = None, status: PartitionStatus | None = None
    ) -> list[Partition]:
        self._ensure_schema()
        query = sa.select(partitions).order_by(partitions.c.dataset, partitions.c.dataid)
        if dataset is not None:
            query = query.where(partitions.c.dataset == dataset)
        if status is not None:
            query = query.where(partitions.c.status == PartitionStatus(status).value)
        with self._transaction(write=False) as conn:
            return [_partition(row) for row in conn.execute(query)]

    def heartbeat_partition(self, dataset: str, dataid: str, claim: Claim) -> None:
        self._ensure_schema()
        with self._transaction() as conn:
            conn.execute(
                sa.update(partitions)
                .where(partitions.c.dataset == dataset, partitions.c.dataid == dataid)
                .where(partitions.c.status == PartitionStatus.RUNNING.value)
                .where(partitions.c.host == claim.host, partitions.c.pid == claim.pid)
                .values(heartbeat_at=to_db_time(time.time()))
            )

    def claim_partition(
        self, claim: Claim, inputs: Sequence[str], output: str, dataid: str | None = None
    ) -> Partition | None:
        self._ensure_schema()
        self._release_gone_claims(output)
        for _ in range(CLAIM_ATTEMPTS):
            try:
                with self._transaction() as conn:
                    found = self._next_eligible(conn, inputs, output, dataid)
                    if found is None:
                        return None
                    taken = self._take(conn, claim, output, found)
                if taken is not None:
                    return taken
            except sa.exc.IntegrityError:
                pass  # another claimer inserted that output row first: look again
        return None

    def _next_eligible(
        self, conn: Connection, inputs: Sequence[str], output: str, dataid: str | None
    ) -> str | None:
        if not inputs:  # nothing to wait for: only the dataid asked for
            if dataid is None:
                return None
            row = conn.execute(
                sa.select(partitions.c.status).where(
                    partitions.c.dataset == output, partitions.c.dataid == dataid
                )
            ).first()
            return dataid if row is None or row.status == PartitionStatus.RESUBMIT.value else None

        def status_in(dataset: str) -> sa.ScalarSelect[Any]:
            # A scalar subquery, not EXISTS: each candidate is looked up by primary key.
            # (As a join, PostgreSQL's planner scanned a whole dataset per candidate on
            # tables filled since its last ANALYZE: seconds per claim.)
            other = partitions.alias()
            return (
                sa.select(other.c.status)
                .where(other.c.dataset == dataset, other.c.dataid == partitions.c.dataid)
                .scalar_subquery()
            )

        resubmit = PartitionStatus.RESUBMIT.value
        query = sa.select(partitions.c.dataid).where(
            partitions.c.dataset == inputs[0],
            partitions.c.status == PartitionStatus.READY.value,
            sa.func.coalesce(status_in(output), resubmit) == resubmit,
        )
        for other in inputs[1:]:
            query = query.where(status_in(other) == PartitionStatus.READY.value)
        if dataid is not None:
            query = query.where(partitions.c.dataid == dataid)
        query = query.order_by(partitions.c.dataid)
        dialect = conn.dialect.name
        if dialect in ("postgresql", "oracle"):
            # Each claimer skips the rows another is claiming. Oracle allows no FETCH FIRST
            # with FOR UPDATE: its rows are locked as they are fetched, and one is fetched.
            query = query.with_for_update(skip_locked=True, of=partitions.c.dataid)
            if dialect == "postgresql":
                query = query.limit(1)
        else:
            query = query.limit(1)
        row = conn.execute(query).first()
        return None if row is None else str(row.dataid)

    def _take(self, conn: Connection, claim: Claim, output: str, dataid: str) -> Partition | None:
        now = time.time()
        values: dict[str, Any] = {
            "status": PartitionStatus.RUNNING.value,
            "job": claim.job,
            "run_id": None,
            "host": claim.host,
            "pid": claim.pid,
            "updated_at": to_db_time(now),
            "heartbeat_at": to_db_time(now),
        }
        key = (partitions.c.dataset == output, partitions.c.dataid == dataid)
        existing = conn.execute(sa.select(partitions.c.status).where(*key)).first()
        if existing is None:
            conn.execute(sa.insert(partitions).values(dataset=output, dataid=dataid, **values))
        elif (
            existing.status != PartitionStatus.RESUBMIT.value
            or not conn.execute(
                sa.update(partitions)
                .where(*key, partitions.c.status == PartitionStatus.RESUBMIT.value)
                .values(values)
            ).rowcount
        ):
            return None  # claimed by another meanwhile
        return Partition(
            output, dataid, PartitionStatus.RUNNING, claim.job, None, claim.host, claim.pid,
            now, now,
        )  # fmt: skip

    def _release_gone_claims(self, output: str) -> None:
        """RUNNING output partitions whose claimer is gone become claimable (RESUBMIT)."""
        for part in self.partitions(output, PartitionStatus.RUNNING):
            if not is_stale_owner(part.host or "", part.pid or 0, part.heartbeat_at):
                continue
            with self._transaction() as conn:
                conn.execute(
                    sa.update(partitions)
                    .where(partitions.c.dataset == output, partitions.c.dataid == part.dataid)
                    .where(partitions.c.status == PartitionStatus.RUNNING.value)
                    .where(partitions.c.heartbeat_at <= to_db_time(part.heartbeat_at + 0.001))
                    .values(
                        status=PartitionStatus.RESUBMIT.value, updated_at=to_db_time(time.time())
                    )
                )


def _partition(row: Row[Any]) -> Partition:
    return Partition(
        dataset=row.dataset,
        dataid=row.dataid,
        status=PartitionStatus(row.status),
        job=row.job,
        run_id=row.run_id,
        host=row.host,
        pid=row.pid,
        updated_at=from_db_time(row.updated_at) or 0.0,
        heartbeat_at=from_db_time(row.heartbeat_at) or 0.0,
    )
