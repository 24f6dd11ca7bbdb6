"""The `spark` task type: spark-submit with the seed's fields, in the seed's order.

The argv is built as a list (no shell, no empty trailing argument) and the task's `env`
reaches the process environment, two things the seed tool got wrong.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mflow.tasks.base import SubprocessTaskType

if TYPE_CHECKING:
    from mflow.config import TaskSpec
    from mflow.tasks.base import TaskContext

# (field, option) in the order spark-submit receives them; flags are set by "yes".
_OPTIONS = (
    ("master", "--master"),
    ("deploy-mode", "--deploy-mode"),
    ("name", "--name"),
    ("verbose", "--verbose"),
    ("supervise", "--supervise"),
    ("class", "--class"),
    ("driver-memory", "--driver-memory"),
    ("driver-cores", "--driver-cores"),
    ("num-executors", "--num-executors"),
    ("executor-memory", "--executor-memory"),
    ("executor-cores", "--executor-cores"),
    ("total-executor-cores", "--total-executor-cores"),
)
_FLAGS = frozenset({"verbose", "supervise"})


def spark_submit_path(spec: TaskSpec, env: dict[str, str] | None = None) -> str:
    """The `spark_submit` field, else $SPARK_HOME/bin/spark-submit, else spark-submit on PATH."""
    if "spark_submit" in spec.fields:
        return str(spec.path(spec.fields["spark_submit"]))
    home = (env or os.environ).get("SPARK_HOME")
    return os.path.join(home, "bin", "spark-submit") if home else "spark-submit"


def _text(value: object) -> str:
    return str(value)


class SparkTask(SubprocessTaskType):
    name = "spark"

    def build_argv(self, spec: TaskSpec, ctx: TaskContext) -> list[str]:
        fields = spec.fields
        argv = [spark_submit_path(spec, dict(ctx.env))]
        for key, option in _OPTIONS:
            value = fields.get(key)
            if value is None or value == "":
                continue
            if key in _FLAGS:
                if value in ("yes", True):
                    argv.append(option)
            else:
                argv += [option, _text(value)]
        confs = fields.get("confs") or []
        pairs = (
            confs.items() if isinstance(confs, dict) else ((c["key"], c["value"]) for c in confs)
        )
        for key, value in pairs:
            argv += ["--conf", f"{key}={_text(value)}"]
        argv.append(fields["ingestor-file"])
        for param in fields.get("parameters") or []:
            argv.append(_text(param["parameter"] if isinstance(param, dict) else param))
        return argv
