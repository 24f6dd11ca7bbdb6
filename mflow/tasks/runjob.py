"""The `runjob` task type (SPEC §6): `{"type": "runjob", "job": "JOB"}` runs `mflow runjob JOB`
(with `"all": true`, `--all`; with `"dataid"`, that one) as the task's process, on the run's
store and files, so a DAG can produce the partitions a partition-aware job is ready for.
The runs it starts are child runs of the task (`mflow status` nests them). "No data ready" is
a success: there was nothing to do."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mflow.tasks.base import SubprocessTaskType
from mflow.tasks.child import mflow_env

if TYPE_CHECKING:
    from mflow.config import TaskSpec
    from mflow.tasks.base import TaskContext


class RunjobTask(SubprocessTaskType):
    name = "runjob"

    def build_argv(self, spec: TaskSpec, ctx: TaskContext) -> list[str]:
        argv = [sys.executable, "-m", "mflow", "runjob", str(spec.fields["job"])]
        if spec.fields.get("all"):
            argv.append("--all")
        if spec.fields.get("dataid"):
            argv += ["--dataid", str(spec.fields["dataid"])]
        argv += ["--parent", f"{ctx.run_id}:{spec.id}"]  # its runs nest under this task
        project = ctx.project
        for flag, path in (
            ("--config", project.config.path),
            ("--datasources", project.datasources.path),
        ):
            if path is not None:
                argv += [flag, str(path)]
        return argv

    def build_env(self, spec: TaskSpec, ctx: TaskContext) -> Mapping[str, str]:
        return mflow_env(ctx)
