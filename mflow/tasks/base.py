"""What a task type is: `TaskType` and the two ways a task runs.

Most types only build an argv (`SubprocessTaskType.build_argv`): a task whose `command()`
is a `Command` runs as a process (`mflow.executors.local.ProcessExecutor`), so timeouts,
cancellation and logging come for free. Types that talk to a service from Python (SQL,
TigerGraph's REST API) return no command and implement `run` instead; it is called on a worker
thread (`ThreadExecutor`), honours `ctx.cancelled`, and returns a `TaskResult`, never raising
for a task failure.
"""

from __future__ import annotations

import math
import shlex
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from mflow.errors import ConfigError, UnknownDatasource
from mflow.process import KILL_GRACE
from mflow.states import TaskState

if TYPE_CHECKING:
    from mflow.config import Datasource, Datasources, Project, TaskSpec


@dataclass(frozen=True)
class TaskResult:
    state: TaskState
    exit_code: int | None = None
    reason: str | None = None

    @classmethod
    def success(cls, exit_code: int | None = 0) -> TaskResult:
        return cls(TaskState.SUCCESS, exit_code)

    @classmethod
    def failure(cls, reason: str, exit_code: int | None = None) -> TaskResult:
        return cls(TaskState.FAILED, exit_code, reason)


@dataclass(frozen=True)
class TaskContext:
    """Everything one attempt of one task needs to know about its run."""

    run_id: int
    task_id: str
    attempt: int
    log_path: Path
    env: Mapping[str, str]  # the complete environment of the task's process
    project: Project
    state_url: str | None = None  # the run's store (child runs use the same one)
    timeout: float | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def log_dir(self) -> Path:
        return self.log_path.parent


INT32_MAX = 2**31 - 1


def timeout_ms(timeout: float | None, most: int = INT32_MAX) -> int | None:
    """A task timeout as the whole milliseconds a driver or server takes: None for no limit
    (none set, or infinite: `timeout: 1e400`), at most `most` (PostgreSQL's
    statement_timeout stops at INT_MAX ms, about 24.8 days; mflow's own deadline still holds)."""
    if timeout is None or not math.isfinite(timeout):
        return None
    return max(1, min(math.ceil(timeout * 1000), most))


def timeout_s(timeout: float | None, most: float = 86400.0 * 365) -> float | None:
    """A task timeout in seconds for a socket or a connect: None for no limit, at most `most`
    (Python's sockets refuse a timeout that does not fit in a C timeval)."""
    if timeout is None or not math.isfinite(timeout):
        return None
    return min(timeout, most)


@dataclass(frozen=True)
class Command:
    """A process to start: argv, environment, working directory, and how to show it."""

    argv: list[str]
    env: Mapping[str, str]
    cwd: Path | None
    display: str  # the exact command line for logs and --dry-run, secrets left out


class TaskType(ABC):
    """One kind of task. Instances are stateless and shared by every task of the type."""

    name: ClassVar[str]
    # Plugin types describe their own fields here (`properties`, `required`); the built-in
    # types are described in schemas/tasks.schema.json.
    schema: ClassVar[Mapping[str, Any] | None] = None
    # Seconds between SIGTERM and SIGKILL when the task is timed out or cancelled.
    kill_grace: ClassVar[float] = KILL_GRACE

    def check(
        self, spec: TaskSpec, datasources: Datasources, datasources_file: str
    ) -> Iterable[ConfigError]:
        """Problems a schema cannot see (a `db` naming an unknown connection...)."""
        return ()

    def command(self, spec: TaskSpec, ctx: TaskContext) -> Command | None:
        """The process this task runs, or None when it runs in-process through `run`."""
        return None

    def run(self, spec: TaskSpec, ctx: TaskContext, log: TextIO) -> TaskResult:
        """Run in-process, on a worker thread; honour `ctx.cancelled` and `ctx.timeout`."""
        raise NotImplementedError(f"task type {self.name} has neither command() nor run()")

    def describe(self, spec: TaskSpec, ctx: TaskContext) -> str:
        """What the task does, for --dry-run and the task log's header."""
        cmd = self.command(spec, ctx)
        return cmd.display if cmd is not None else f"{self.name} task {spec.id}"


class SubprocessTaskType(TaskType):
    """A task that is one process: subclasses build its argv (and maybe its environment)."""

    @abstractmethod
    def build_argv(self, spec: TaskSpec, ctx: TaskContext) -> list[str]: ...

    def build_env(self, spec: TaskSpec, ctx: TaskContext) -> Mapping[str, str]:
        return ctx.env

    def command(self, spec: TaskSpec, ctx: TaskContext) -> Command:
        argv = self.build_argv(spec, ctx)
        return Command(argv, self.build_env(spec, ctx), spec.cwd, shlex.join(argv))


def check_connection(
    spec: TaskSpec,
    datasources: Datasources,
    datasources_file: str,
    kinds: tuple[str, ...],
    required: bool = True,
) -> list[ConfigError]:
    """The task's `db` names a connection of one of `kinds` in the datasources file."""
    name = spec.fields.get("db")
    where = {"file": spec.source.file, "json_path": f"{spec.source.json_path}.db"}
    if name is None:
        if not required:
            return []
        return [ConfigError("missing required field 'db'", task_id=spec.id, **where)]
    if name not in datasources:
        known = ", ".join(sorted(datasources.connections)) or "none"
        origin = (
            f"in {datasources_file}"
            if datasources.path is not None
            else f"{datasources_file} was not found"
        )
        return [
            UnknownDatasource(
                f"unknown connection '{name}'",
                task_id=spec.id,
                hint=f"known: {known}; {origin}",
                **where,
            )
        ]
    conn: Datasource = datasources[name]
    if conn.kind not in kinds:
        return [
            UnknownDatasource(
                f"connection '{name}' is a {conn.kind} connection, not {' or '.join(kinds)}",
                task_id=spec.id,
                **where,
            )
        ]
    return []
