"""The environment of a task's process (SPEC §2).

mflow's own environment without its secrets, then config.json's `env`, then the task's `env`
(each value with `${VAR}` expanded against what came before), then the `MFLOW_*` variables.
The runner and `--dry-run` both build it here, so the plan shows what would really run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mflow.config import expand_vars

if TYPE_CHECKING:
    from mflow.config import Project, TaskSpec

CHILD_ENV = ("MFLOW_PARENT_RUN_ID", "MFLOW_PARENT_TASK_ID")


def base_env(
    project: Project,
    run_id: int,
    log_dir: Path,
    parent_run_id: int | None = None,
    parent_task_id: str | None = None,
) -> dict[str, str]:
    """What every task of a run gets."""
    from mflow.secrets import PASSKEY_ENV, mask_url, secret_variables

    # Never handed to a task: the passkey (it decrypts every password in the datasources),
    # and the variables holding a connection's password, secret or token.
    hidden = {PASSKEY_ENV} | secret_variables(project.datasources.fields())
    env = {k: v for k, v in os.environ.items() if k not in hidden}
    if mask_url(env.get("MFLOW_STATE", "")) != env.get("MFLOW_STATE", ""):
        del env["MFLOW_STATE"]  # it holds a password
    for key in CHILD_ENV:
        env.pop(key, None)
    for key, value in project.config.env:
        env[key] = expand_vars(value, env)
    env["MFLOW_RUN_ID"] = str(run_id)
    env["MFLOW_LOG_DIR"] = str(log_dir)
    if parent_run_id is not None:
        env["MFLOW_PARENT_RUN_ID"] = str(parent_run_id)
        env["MFLOW_PARENT_TASK_ID"] = parent_task_id or ""
    return env


def task_env(base: dict[str, str], spec: TaskSpec, attempt: int) -> dict[str, str]:
    """One attempt's environment: the run's, the task's own `env`, its id and attempt."""
    env = dict(base)
    for key, value in spec.env:
        env[key] = expand_vars(value, env)
    env["MFLOW_TASK_ID"] = spec.id
    env["MFLOW_ATTEMPT"] = str(attempt)
    return env
