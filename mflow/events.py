"""The events a run emits, and the listeners that receive them.

Every state transition of a run goes through `Listener.handle`, called on the runner's thread
in the order the transitions happen. The master log, the console views, the JSON event
stream and the state store are all listeners; none of them changes run state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from mflow.states import RunState, TaskState


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: int
    dag: str
    taskfile: str
    config: str | None
    datasources: str | None
    state_url: str  # password masked
    log_directory: str
    tasks: int  # tasks this run will consider
    concurrency: int
    time: float
    resumed: bool = False
    done: int = 0  # tasks already SUCCESS (a resumed run)
    parent_run_id: int | None = None
    parent_task_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskStarted:
    run_id: int
    task_id: str
    attempt: int
    pid: int | None
    log_path: str
    command: str  # what runs, as shown in --dry-run; never a secret
    time: float


@dataclass(frozen=True, slots=True)
class TaskEnded:
    """A task attempt ended, or a task was settled without running (UPSTREAM_FAILED...)."""

    run_id: int
    task_id: str
    attempt: int
    state: TaskState
    exit_code: int | None
    reason: str | None
    started: float | None
    time: float
    log_path: str | None
    retry_in: float | None = None  # set when the attempt failed and another one follows
    pid: int | None = None

    @property
    def duration(self) -> float | None:
        return None if self.started is None else self.time - self.started


@dataclass(frozen=True, slots=True)
class RunNotice:
    """Something an operator should see that is not a transition (a config re-read...)."""

    run_id: int
    level: str  # "INFO" or "WARNING"
    message: str
    time: float


@dataclass(frozen=True, slots=True)
class OwnerGone:
    """A run recorded as RUNNING whose mflow is gone (killed, its host down): found when a
    run is taken over or when the store is asked about it, and marked FAILED or resumed."""

    run_id: int
    host: str
    pid: int
    heartbeat_at: float
    time: float
    resumed_by: int | None = None  # the pid taking it over (a resume), else it is FAILED


@dataclass(frozen=True, slots=True)
class RunEnded:
    run_id: int
    state: RunState
    counts: dict[str, int]
    started: float
    time: float
    exit_code: int
    failed: tuple[tuple[str, str | None], ...] = ()  # (task id, log path) of failed tasks
    extra: dict[str, Any] = field(default_factory=dict)


Event = RunStarted | TaskStarted | TaskEnded | RunNotice | OwnerGone | RunEnded


def event_dict(event: Event) -> dict[str, Any]:
    """The event as a JSON-ready dict with its kind first (`--json` output)."""
    data: dict[str, Any] = {"event": type(event).__name__}
    for key, value in asdict(event).items():
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, Path):
            value = str(value)
        data[key] = value
    return data


class Listener(Protocol):
    def handle(self, event: Event) -> None: ...

    def flush(self) -> None:
        """The runner is about to wait: write out anything buffered."""

    def close(self) -> None: ...


class Listeners:
    """Fans each event out to every listener, in order."""

    def __init__(self, listeners: list[Listener] | None = None) -> None:
        self.listeners: list[Listener] = list(listeners or [])

    def add(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def handle(self, event: Event) -> None:
        for listener in self.listeners:
            listener.handle(event)

    def flush(self) -> None:
        for listener in self.listeners:
            listener.flush()

    def close(self) -> None:
        for listener in reversed(self.listeners):
            listener.close()
