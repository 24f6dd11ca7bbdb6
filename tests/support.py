"""Helpers shared by the test modules (importable as `support`: pyproject sets pythonpath)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mflow.events import Event, TaskEnded, TaskStarted

if TYPE_CHECKING:
    from mflow.config import Project

# The state store backends a parametrised test runs on (each needs only its own service).
STATE_BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("zookeeper", marks=pytest.mark.zookeeper),
]

# A bash command that records when the task started and ended, from inside the task.
TRACE = (
    'echo "$MFLOW_TASK_ID start $(date +%s.%N)" >> trace; sleep {s}; '
    'echo "$MFLOW_TASK_ID end $(date +%s.%N)" >> trace'
)


def intervals(path: Path) -> list[tuple[float, float]]:
    """(start, end) pairs from the lines TRACE tasks wrote."""
    starts: dict[str, float] = {}
    pairs = []
    for line in path.read_text().splitlines():
        tid, what, t = line.split()
        if what == "start":
            starts[tid] = float(t)
        else:
            pairs.append((starts[tid], float(t)))
    return pairs


def max_overlap(pairs: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    points = sorted([(s, 1) for s, _ in pairs] + [(e, -1) for _, e in pairs])
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return not stat.read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return False


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Poll `condition` until it is true; fail naming `what` if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {timeout:g}s")
        time.sleep(0.02)


def bash(task_id: str, command: str, *depends: str, **fields: Any) -> dict[str, Any]:
    """A bash task as it is written in tasks.json."""
    return {"id": task_id, "type": "bash", "command": command, "depends": list(depends), **fields}


class Recorder:
    """A run listener that keeps every event, to assert on what a run did."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def ended(self, task: str) -> list[TaskEnded]:
        """Every end of the task, one per attempt."""
        return [e for e in self.events if isinstance(e, TaskEnded) and e.task_id == task]

    def ended_once(self, task: str) -> TaskEnded:
        """The end of a task that must have ended exactly once."""
        (event,) = self.ended(task)
        return event

    def started(self, task: str) -> list[TaskStarted]:
        return [e for e in self.events if isinstance(e, TaskStarted) and e.task_id == task]


def run_project(project: Project, tmp_path: Path) -> Recorder:
    """Run every task of a loaded project in this process (run id 1, 3 at a time)."""
    from mflow.events import Listeners
    from mflow.runner import Plan, Runner, Settings

    recorder = Recorder()
    log_dir = tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)
    settings = Settings(run_id=1, log_dir=log_dir, concurrency=3, concurrency_fixed=True)
    Runner(project, Plan(tuple(project.dag.tasks)), settings, Listeners([recorder])).run()
    return recorder
