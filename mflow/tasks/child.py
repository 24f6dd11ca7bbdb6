"""The `mflow` task type: a child run of another tasks file, linked to this run and task.

The child is `python -m mflow run` with the same interpreter, as one process of the parent's
task, so it gets the task log, the timeout and the cancellation of any other task. It records
its parent (`--parent RUN:TASK`) in the same store (`MFLOW_STATE`), logs into the parent's log
directory, and prints plain lines into the parent's task log. Started again for the same
parent task (a retry, a resumed parent), it resumes its earlier run instead of starting afresh
(see `mflow.run`). A SIGTERM to it cancels its own tasks in turn, at every depth.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from mflow.errors import ConfigError
from mflow.process import KILL_GRACE
from mflow.secrets import PASSKEY_ENV, secret_variables
from mflow.tasks.base import SubprocessTaskType

if TYPE_CHECKING:
    from mflow.config import Datasources, TaskSpec
    from mflow.tasks.base import TaskContext

_FILES = ("taskfile", "config", "datasources")


class ChildRunTask(SubprocessTaskType):
    name = "mflow"
    # The child needs its own grace period to stop its tasks before it is killed itself.
    kill_grace = KILL_GRACE + 5

    def check(
        self, spec: TaskSpec, datasources: Datasources, datasources_file: str
    ) -> Iterable[ConfigError]:
        problems = []
        for key in _FILES:
            value = spec.fields.get(key)
            if value is not None and not spec.path(value).is_file():
                problems.append(
                    ConfigError(
                        f"{key} '{value}' not found",
                        file=spec.source.file,
                        json_path=f"{spec.source.json_path}.{key}",
                        task_id=spec.id,
                        hint=f"looked for {spec.path(value)}",
                    )
                )
        return problems

    def build_argv(self, spec: TaskSpec, ctx: TaskContext) -> list[str]:
        argv = [sys.executable, "-m", "mflow", "run"]
        project = ctx.project
        inherited = {
            "config": project.config.path,
            "datasources": project.datasources.path,
        }
        for key in _FILES:
            value = spec.fields.get(key)
            path = spec.path(value) if value is not None else inherited.get(key)
            if path is not None:
                argv += [f"--{key}", str(path)]
        argv += ["--log-dir", str(ctx.log_dir), "--parent", f"{ctx.run_id}:{spec.id}"]
        return argv

    def build_env(self, spec: TaskSpec, ctx: TaskContext) -> Mapping[str, str]:
        return mflow_env(ctx)


def mflow_env(ctx: TaskContext) -> dict[str, str]:
    """The environment of an mflow process a task starts (a child run, a runjob): it needs
    what other tasks do not get: the store, the passkey and the variables holding the
    connections' passwords."""
    env = dict(ctx.env)
    if ctx.state_url:
        env["MFLOW_STATE"] = ctx.state_url
    for name in (PASSKEY_ENV, *secret_variables(ctx.project.datasources.fields())):
        if name in os.environ:
            env[name] = os.environ[name]
    return env
