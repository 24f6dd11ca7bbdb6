"""The jobs a store holds (SPEC §5): what `mflow jobs` and the HTTP API do and show.

Adding, updating, applying a file of jobs, pausing, deleting; a job as `jobs list` shows it
(`JobView`) and its slots as `jobs history` does (`HistoryRow`). Reading and checking job
documents is `mflow.jobs`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mflow.errors import ConfigError
from mflow.jobs import job_from_record, known_job

if TYPE_CHECKING:
    from mflow.launch import Launched
    from mflow.plan import RunRequest
    from mflow.state.base import Fire, JobRecord, StateStore


@dataclass(frozen=True)
class JobView:
    """A job as `jobs list` shows it (JSON keys of SPEC §5)."""

    name: str
    schedule: str
    timezone: str
    enabled: bool
    next_fire: float | None
    last_run_id: int | None
    last_state: str | None


def view(store: StateStore, record: JobRecord, now: float | None = None) -> JobView:
    job = job_from_record(record)
    now = time.time() if now is None else now
    last = store.list_runs(dag=job.name, limit=1)
    next_fire = job.schedule.next_after(now) if job.schedule is not None and job.enabled else None
    return JobView(
        name=job.name,
        schedule=job.schedule_text,
        timezone=job.schedule.timezone if job.schedule else "UTC",
        enabled=job.enabled,
        next_fire=next_fire,
        last_run_id=last[0].id if last else None,
        last_state=last[0].status.value if last else None,
    )


@dataclass(frozen=True)
class HistoryRow:
    """One slot as `jobs history` shows it (JSON keys of SPEC §5)."""

    slot: float
    kind: str
    outcome: str
    reason: str | None
    run_id: int | None
    state: str | None
    host: str | None


def history(store: StateStore, name: str, limit: int = 20) -> list[HistoryRow]:
    """A job's slots, newest first, with the state of the run each started."""
    from mflow.errors import RunNotFound

    known_job(store, name)
    rows = []
    for fire in store.fires(name, limit=limit):
        state = None
        if fire.run_id is not None:
            try:
                state = store.get_run(fire.run_id).status.value
            except RunNotFound:
                state = "PRUNED"
        rows.append(
            HistoryRow(
                fire.slot, fire.kind, fire.outcome, fire.reason, fire.run_id, state, fire.host
            )
        )
    return rows


def fire_dict(fire: Fire) -> dict[str, Any]:
    return {
        "job": fire.job,
        "slot": fire.slot,
        "kind": fire.kind,
        "outcome": fire.outcome,
        "reason": fire.reason,
        "run_id": fire.run_id,
        "host": fire.host,
    }


# ---------------------------------------------------------------------- what the commands do


def add(store: StateStore, name: str, doc: Mapping[str, Any], base_dir: str) -> JobRecord:
    """`jobs add`: a new job (ConfigError when the name exists: use update)."""

    record = _record(name, doc, base_dir)
    if not store.put_job(record, create=True):
        raise ConfigError(
            f"job '{name}' exists", json_path="", hint=f"mflow jobs update {name} ..."
        )
    return record


def update(store: StateStore, name: str, doc: Mapping[str, Any], base_dir: str) -> JobRecord:
    """`jobs update`: replace a job's document (its slots' history stays)."""
    known_job(store, name)
    record = _record(name, doc, base_dir)
    store.put_job(record, create=False)
    return record


@dataclass(frozen=True)
class Applied:
    added: list[str]
    updated: list[str]
    unchanged: list[str]
    deleted: list[str]


def apply(
    store: StateStore, jobs: Mapping[str, Mapping[str, Any]], base_dir: str, prune: bool
) -> Applied:
    """`jobs apply -f FILE [--prune]`: create and update the file's jobs (and with `prune`
    delete the others); says what changed."""
    existing = {j.name: j for j in store.list_jobs()}
    added, updated, unchanged = [], [], []
    for name, doc in jobs.items():
        record = _record(name, doc, base_dir)
        old = existing.get(name)
        if old is None:
            store.put_job(record, create=True)
            added.append(name)
        elif (
            dict(old.document) != dict(record.document)
            or old.base_dir != base_dir
            or ("enabled" in doc and old.enabled != record.enabled)
        ):
            store.put_job(
                record if "enabled" in doc else _with_enabled(record, old.enabled), create=False
            )
            updated.append(name)
        else:
            unchanged.append(name)
    deleted = [n for n in existing if n not in jobs] if prune else []
    for name in deleted:
        store.delete_job(name)
    return Applied(added, updated, unchanged, deleted)


def _record(name: str, doc: Mapping[str, Any], base_dir: str) -> JobRecord:
    from mflow.state.base import JobRecord

    stored = {k: v for k, v in doc.items() if k != "enabled"}
    return JobRecord(name, stored, base_dir, bool(doc.get("enabled", True)))


def _with_enabled(record: JobRecord, enabled: bool) -> JobRecord:
    from dataclasses import replace

    return replace(record, enabled=enabled)


def set_enabled(store: StateStore, name: str, enabled: bool) -> None:
    """`jobs pause` / `jobs resume`."""
    known_job(store, name)
    store.set_job_enabled(name, enabled)


def delete(store: StateStore, name: str) -> None:
    known_job(store, name)
    store.delete_job(name)


def trigger(store: StateStore, name: str, request: RunRequest) -> tuple[Fire, Launched]:
    """`jobs trigger`: a manual slot of its own (the trigger time), claimed, then the job's
    run started in the background through `mflow.launch` (the same way the scheduler does)."""
    from dataclasses import replace

    from mflow.launch import LaunchError, launch
    from mflow.state.base import Fire, this_host

    record = known_job(store, name)
    job = job_from_record(record)
    fire = Fire(name, time.time(), kind="manual", host=this_host())
    while not store.claim_fire(fire):  # two triggers in one microsecond: each its own slot
        fire = replace(fire, slot=fire.slot + 1e-6)
    try:
        launched = launch(
            replace(request, job=name, allow_concurrent=job.max_active > 1),
            partitions=job.output is not None,
        )
    except LaunchError as exc:
        store.set_fire_run(fire, None, f"could not start: {exc}")
        raise
    store.set_fire_run(fire, launched.run_id, "no data ready" if launched.run_id is None else None)
    return replace(fire, run_id=launched.run_id), launched
