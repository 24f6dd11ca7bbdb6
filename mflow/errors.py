"""The exception tree and the exit codes it maps to.

Bad *input* raises one of these; a *task* failure is data (`TaskResult`), never an exception.

    MflowError
    ├── ConfigError (file, json_path, task_id) ── SchemaError, UnknownTaskType,
    │                                             UnknownDatasource,
    │                                             GraphError ── CycleError, MissingDependency
    ├── InvalidInput (problems: every ConfigError found in one pass)
    ├── PluginError (an installed task-type plugin cannot be loaded)
    └── StateStoreError ── BackendUnavailable, RunAlreadyActive, RunNotFound

The CLI catches `MflowError`, prints `str(error)` (one line per problem) to stderr and exits
with `error.exit_code`. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    TASK_FAILED = 1
    INVALID_INPUT = 2
    UNAVAILABLE = 3  # the DAG is already running, or the state store cannot be reached
    SIGINT = 130
    SIGTERM = 143


class MflowError(Exception):
    exit_code: ExitCode = ExitCode.INVALID_INPUT


class ConfigError(MflowError):
    """One problem in one input file: where (file + JSON path), what, in which task."""

    def __init__(
        self,
        message: str,
        *,
        file: str = "",
        json_path: str = "$",
        task_id: str | None = None,
        hint: str | None = None,
        subject: str = "task",  # what task_id names: a task, or a job (SPEC §5)
    ) -> None:
        self.message = message
        self.subject = subject
        self.file = file
        self.json_path = json_path
        self.task_id = task_id
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file} {self.json_path}".strip()
        text = f"{where}: {self.message}" if where else self.message
        if self.task_id is not None:
            text += f" in {self.subject} '{self.task_id}'"
        if self.hint:
            text += f" ({self.hint})"
        return text


class SchemaError(ConfigError):
    """The document does not match its JSON Schema."""


class UnknownTaskType(ConfigError):
    pass


class UnknownDatasource(ConfigError):
    pass


class GraphError(ConfigError):
    pass


class CycleError(GraphError):
    def __init__(self, cycle: list[str], **kwargs: object) -> None:
        self.cycle = cycle
        path = " -> ".join([*cycle, cycle[0]])
        super().__init__(  # type: ignore[arg-type]
            f"dependency cycle {path} (each task depends on the next)", **kwargs
        )


class MissingDependency(GraphError):
    pass


class InvalidInput(MflowError):
    """Every problem found in the input files, reported together."""

    def __init__(self, problems: Iterable[ConfigError]) -> None:
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class PluginError(MflowError):
    """A task type's plugin is installed (an entry point) but cannot be loaded."""


class StateStoreError(MflowError):
    exit_code = ExitCode.UNAVAILABLE


class BackendUnavailable(StateStoreError):
    """The store cannot be reached, or its driver is not installed."""


class RunAlreadyActive(StateStoreError):
    def __init__(self, dag: str, run_id: int, host: str, pid: int) -> None:
        self.dag, self.run_id, self.host, self.pid = dag, run_id, host, pid
        super().__init__(
            f"DAG '{dag}' is already running: run {run_id} on host {host}, pid {pid} "
            "(wait for it, or pass --allow-concurrent)"
        )


class RunNotFound(StateStoreError):
    exit_code = ExitCode.INVALID_INPUT
