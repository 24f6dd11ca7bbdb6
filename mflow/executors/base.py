"""The executor interface and the prepared attempt it runs.

An `Attempt` is one try of one task, prepared by the runner: its context (environment, log
path, timeout), the process to start (`command`) or, for a task that runs in-process, none.
An `Executor` starts it, reports its end on the runner's thread (`collect`, after the loop
wakes up), and stops it on request (`terminate`, then `kill` after the type's grace period).
Executors only report what happened (exit code, reason); the runner alone turns that into
task state, retries and the run's outcome.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mflow import logs

if TYPE_CHECKING:
    from mflow.config import TaskSpec
    from mflow.process import ExitWatcher
    from mflow.tasks.base import Command, TaskContext, TaskResult, TaskType


@dataclass(eq=False, slots=True)
class Attempt:
    """One attempt of one task, from its preparation to its end."""

    spec: TaskSpec
    number: int
    started: float
    log_file: str  # the task log's path, as events carry it
    ctx: TaskContext
    task_type: TaskType
    command: Command | None  # None: the task runs in-process (`TaskType.run`)
    shown: str  # what runs, for the log header and events; never a secret
    earlier: int = 0  # attempts made before this run took the task (a resumed run)
    executor: Executor | None = None
    pid: int | None = None
    handle: Any = None  # the executor's own record of it (a Process, a thread...)
    deadline: float | None = None  # monotonic
    kill_at: float | None = None  # monotonic: the end of the grace period after terminate
    timed_out: bool = False
    cancelled: bool = False

    @property
    def tries(self) -> int:
        """Which try of the task this is within this run (1 for the first)."""
        return self.number - self.earlier


# The `cancelled` of an attempt that runs as a process: a process is stopped with signals, so
# nothing ever sets it (and a run of 10,000 short tasks creates no event for each). The thread
# executor gives each attempt it runs an event of its own.
SIGNALLED = threading.Event()


class StartError(Exception):
    """The attempt could not be started; `exit_code` is what a shell would report."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Executor(ABC):
    """Runs prepared attempts somewhere and tells the runner when they end.

    Every method is called on the runner's thread. An executor whose attempts end elsewhere
    (a thread, another machine) queues their results and calls `watcher.wake()`; the runner
    then calls `collect`. Timers of its own (a process group outliving its leader) are
    reported by `next_due` and handled in `tick`.
    """

    def __init__(self, watcher: ExitWatcher) -> None:
        self.watcher = watcher

    @abstractmethod
    def start(self, attempt: Attempt) -> None:
        """Start the attempt (setting `attempt.pid` when it is a local process); raises
        StartError when it cannot start."""

    @abstractmethod
    def collect(self) -> Iterable[tuple[Attempt, TaskResult]]:
        """Attempts that ended since the last call, with what the executor saw."""

    @abstractmethod
    def terminate(self, attempt: Attempt) -> None:
        """Ask the attempt to stop (SIGTERM to its process group, its cancel event set...)."""

    @abstractmethod
    def kill(self, attempt: Attempt) -> bool:
        """Stop it for good after the grace period. True when no end will ever be reported
        (a thread cannot be killed): the runner settles the attempt itself."""

    def next_due(self) -> float | None:
        """The monotonic time this executor needs `tick` called, if any."""
        return None

    def tick(self, now: float) -> None:  # noqa: B027 - most executors keep no timers
        """Timers of the executor's own."""

    def busy(self) -> bool:
        """Work left after every attempt has been settled (groups still being killed)."""
        return False

    def close(self) -> None:  # noqa: B027 - optional
        """The run is over."""


def open_log(attempt: Attempt) -> int:
    """The attempt's log descriptor, its header line written: how every attempt starts.
    StartError when the log cannot be opened (a symlink in its place, a full disk...)."""
    try:
        fd = logs.open_task_log(attempt.ctx.log_path)
    except OSError as exc:
        raise StartError(f"cannot open the task log {attempt.log_file}: {exc.strerror}") from None
    header = logs.attempt_header(
        attempt.ctx.run_id,
        attempt.spec.id,
        attempt.number,
        attempt.spec.retries + 1,
        attempt.shown,
        attempt.started,
        attempt.earlier,
    )
    try:
        os.write(fd, header.encode())
    except BaseException:
        os.close(fd)
        raise
    return fd
