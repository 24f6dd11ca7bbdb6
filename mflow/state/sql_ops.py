"""The SQL store's operations side (SPEC §11): task definitions, stop requests, runs whose
owner is gone, the DAGs a store knows, pruning. A mixin of `sql.SqlStore`, which provides
the transactions and the schema check.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mflow.state.base import OWNER_GONE, DagSummary, RunRecord
from mflow.state.ddl import (
    STORE_ID_KEY,
    locks,
    meta,
    run_defs,
    run_from_row,
    runs,
    stops,
    task_runs,
    to_db_time,
)
from mflow.states import RunState

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

_CHUNK = 500  # ids per IN (...) list: Oracle allows 1,000


class SqlOperations:
    """Methods of `StateStore`'s operations section, for `SqlStore`."""

    if TYPE_CHECKING:

        def _ensure_schema(self) -> None: ...

        def _transaction(self, *, write: bool = True) -> AbstractContextManager[Connection]: ...

    _store_id: str | None = None

    def store_id(self) -> str:
        if self._store_id is None:
            self._ensure_schema()
            query = sa.select(meta.c.value).where(meta.c.name == STORE_ID_KEY)
            with self._transaction(write=False) as conn:
                found = conn.scalar(query)
            if found is None:
                try:
                    with self._transaction() as conn:
                        made = uuid.uuid4().hex
                        conn.execute(sa.insert(meta).values(name=STORE_ID_KEY, value=made))
                    found = made
                except sa.exc.IntegrityError:  # another process made it first
                    with self._transaction(write=False) as conn:
                        found = conn.scalar(query)
            self._store_id = str(found)
        return self._store_id

    def set_definitions(self, run_id: int, snapshot: bytes) -> None:
        self._ensure_schema()
        with self._transaction() as conn:
            conn.execute(sa.delete(run_defs).where(run_defs.c.run_id == run_id))
            conn.execute(sa.insert(run_defs).values(run_id=run_id, snapshot=snapshot))

    def definitions(self, run_id: int) -> bytes | None:
        self._ensure_schema()
        query = sa.select(run_defs.c.snapshot).where(run_defs.c.run_id == run_id)
        with self._transaction(write=False) as conn:
            found = conn.scalar(query)
        return None if found is None else bytes(found)

    def remove_tasks(self, run_id: int, task_ids: Iterable[str]) -> None:
        self._ensure_schema()
        with self._transaction() as conn:
            for chunk in _chunks(list(task_ids)):
                conn.execute(
                    sa.delete(task_runs).where(
                        task_runs.c.run_id == run_id, task_runs.c.task_id.in_(chunk)
                    )
                )

    def request_stop(self, run_id: int, by: str) -> None:
        self._ensure_schema()
        with self._transaction() as conn:
            conn.execute(sa.delete(stops).where(stops.c.run_id == run_id))
            conn.execute(
                sa.insert(stops).values(
                    run_id=run_id, requested_at=to_db_time(time.time()), requested_by=by[:300]
                )
            )

    def stop_requested(self, run_id: int) -> str | None:
        self._ensure_schema()
        query = sa.select(stops.c.requested_by).where(stops.c.run_id == run_id)
        with self._transaction(write=False) as conn:
            row = conn.execute(query).first()
        return None if row is None else str(row.requested_by or "?")

    def mark_gone(self, run: RunRecord, at: float) -> bool:
        self._ensure_schema()
        with self._transaction() as conn:
            changed = conn.execute(
                sa.update(runs)
                .where(runs.c.id == run.id, runs.c.status == RunState.RUNNING.value)
                # Not beaten since it was read (a beat is seconds later; the margin is the
                # float round trip of the time).
                .where(runs.c.heartbeat_at <= to_db_time(run.heartbeat_at + 0.001))
                .where(runs.c.pid == run.pid)
                .values(status=RunState.FAILED.value, ended_at=to_db_time(at), note=OWNER_GONE)
            ).rowcount
            if changed == 1:
                conn.execute(
                    sa.delete(locks).where(locks.c.dag == run.dag, locks.c.run_id == run.id)
                )
        return changed == 1

    def dags(self) -> list[DagSummary]:
        self._ensure_schema()
        latest = (
            sa.select(runs.c.dag, sa.func.max(runs.c.id).label("last"), sa.func.count().label("n"))
            .group_by(runs.c.dag)
            .subquery()
        )
        query = (
            sa.select(runs, latest.c.n)
            .join(latest, runs.c.id == latest.c.last)
            .order_by(runs.c.dag)
        )
        with self._transaction(write=False) as conn:
            return [
                DagSummary(row.dag, int(row.n), run_from_row(row)) for row in conn.execute(query)
            ]

    def ended_before(self, at: float, dag: str | None = None) -> list[RunRecord]:
        self._ensure_schema()
        query = (
            sa.select(runs)
            .where(runs.c.status != RunState.RUNNING.value, runs.c.ended_at < to_db_time(at))
            .order_by(runs.c.id)
        )
        if dag is not None:
            query = query.where(runs.c.dag == dag)
        with self._transaction(write=False) as conn:
            return [run_from_row(row) for row in conn.execute(query)]

    def delete_runs(self, run_ids: Iterable[int]) -> None:
        self._ensure_schema()
        ids = list(run_ids)
        with self._transaction() as conn:
            for chunk in _chunks(ids):
                for table, column in (
                    (task_runs, task_runs.c.run_id),
                    (run_defs, run_defs.c.run_id),
                    (stops, stops.c.run_id),
                    (runs, runs.c.id),
                ):
                    conn.execute(sa.delete(table).where(column.in_(chunk)))


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
