"""Acting on runs from outside them: stopping a run wherever it runs, pruning old runs.

`stop_run` signals a run's mflow when it runs on this host and leaves a stop request in the
store either way (the owner's store writer looks for one every few seconds, so a run on
another host stops too), then waits for the run to end. `prune` deletes finished runs older
than a cutoff with their task rows and task logs; an active run is never touched.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mflow.errors import ConfigError
from mflow.states import RunState

if TYPE_CHECKING:
    from mflow.state.base import RunRecord, StateStore

STOP_WAIT = 60.0  # seconds `mflow stop` waits for the run to end (tasks get 10 s of grace)


@dataclass(frozen=True)
class StopResult:
    run: RunRecord  # as last seen
    signalled: bool  # its mflow on this host got SIGTERM
    ended: bool  # the run was seen to end within the wait


def stop_run(
    store: StateStore, run: RunRecord, *, wait: float = STOP_WAIT, poll: float = 0.2
) -> StopResult:
    """Stop a RUNNING run (raises ConfigError for one that is not), wait up to `wait`."""
    from mflow.queries import settle_gone
    from mflow.state.base import this_host

    (run,) = settle_gone(store, [run])
    if run.status is not RunState.RUNNING:
        gone = f" ({run.note})" if run.note else ""
        raise ConfigError(
            f"run {run.id} of DAG '{run.dag}' is not running: it is {run.status}{gone}",
            json_path="",
        )
    store.request_stop(run.id, f"{os.environ.get('USER', '?')}@{this_host()} pid {os.getpid()}")
    signalled = run.host == this_host() and _is_mflow(run.pid) and _signal(run.pid)
    deadline = time.monotonic() + wait
    while True:
        current = store.get_run(run.id)
        if current.status is not RunState.RUNNING:
            return StopResult(current, signalled, ended=True)
        if time.monotonic() >= deadline:
            return StopResult(current, signalled, ended=False)
        time.sleep(poll)


def _is_mflow(pid: int) -> bool:
    """The process is an mflow (a pid recorded long ago may belong to anything now)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"mflow" in part for part in argv[:4])


def _signal(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return False
    return True


_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(value: str) -> float:
    """`30d`, `12h`, `2w`, `90m`: seconds. Raises ConfigError."""
    match = _AGE.match(value)
    if not match:
        raise ConfigError(
            f"--older-than: '{value}' is not an age", json_path="", hint="like 30d, 12h, 2w, 90m"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class PruneResult:
    runs: list[RunRecord]
    logs: list[Path] = field(default_factory=list)  # task logs deleted (or that would be)
    bytes: int = 0


def prune(
    store: StateStore, older_than: float, *, dag: str | None = None, dry_run: bool = False
) -> PruneResult:
    """Delete finished runs that ended more than `older_than` seconds ago (child runs with
    them), their task rows and their task logs. Never a RUNNING run."""
    runs = store.ended_before(time.time() - older_than, dag)
    logs: list[Path] = []
    size = 0
    for run in runs:
        for row in store.tasks(run.id):
            path = _own_log(run, row.log_path)
            if path is not None:
                try:
                    size += path.stat().st_size
                except OSError:
                    continue
                logs.append(path)
    if not dry_run:
        for path in logs:
            try:
                path.unlink()
            except OSError:
                pass
        store.delete_runs([r.id for r in runs])
    return PruneResult(runs, logs, size)


def _own_log(run: RunRecord, log_path: str | None) -> Path | None:
    """The task log of this run, only if its name says so (never another file)."""
    if not log_path:
        return None
    path = Path(log_path)
    name = path.name
    if name.startswith(f"master_{run.id}_task_") or re.match(
        rf"^master_[0-9a-f]{{8}}-{run.id}_task_", name
    ):
        return path
    return None
