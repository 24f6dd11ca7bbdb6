"""Starting a run in the background, as its own `mflow` process: for the faces that must not
wait for a run (the scheduler's fires, `mflow jobs trigger`, the HTTP API).

`launch(request)` starts `python -m mflow run ...` with the request's options in a session of
its own (the caller's death does not kill it), and returns as soon as the run is taken in the
store, with its id: the child writes the id to a pipe (`--announce-fd`), then points its stdout
and stderr at /dev/null (its logs and the store are the record). A child that fails before it
has a run (bad input, a busy DAG, an unreachable store) exits with its usual code and one line
on stderr, which `launch` raises as `LaunchError` with that code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mflow.errors import ExitCode, MflowError

if TYPE_CHECKING:
    from mflow.plan import RunRequest


@dataclass(frozen=True)
class Launched:
    run_id: int | None  # None: a runjob that found no data ready
    pid: int
    process: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)


class LaunchError(MflowError):
    """The background run did not start; `exit_code` is the one its mflow exited with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        try:
            self.exit_code = ExitCode(exit_code)
        except ValueError:
            self.exit_code = ExitCode.TASK_FAILED


def run_argv(request: RunRequest) -> list[str]:
    """`mflow run` with the request's options (the inverse of the CLI's parsing)."""
    argv = [sys.executable, "-m", "mflow", "run"]
    options = (
        ("--config", request.config),
        ("--taskfile", request.taskfile),
        ("--datasources", request.datasources),
        ("--concurrency", request.concurrency),
        ("--resume", request.resume),
        ("--from", request.rerun_from),
        ("--oneshot", request.oneshot),
        ("--target", request.target),
        ("--state", request.state),
        ("--log-dir", request.log_dir),
        ("--parent", request.parent),
        ("--job", request.job),
    )
    for flag, value in options:
        if value is not None:
            argv += [flag, str(value)]
    if request.fail_fast:
        argv.append("--fail-fast")
    if request.allow_concurrent:
        argv.append("--allow-concurrent")
    return argv


def runjob_argv(request: RunRequest) -> list[str]:
    """`mflow runjob JOB --all` for a partition-aware job (`request.job`), with the
    request's files and store."""
    argv = [sys.executable, "-m", "mflow", "runjob", str(request.job), "--all"]
    for flag, value in (
        ("--config", request.config),
        ("--datasources", request.datasources),
        ("--state", request.state),
    ):
        if value is not None:
            argv += [flag, str(value)]
    return argv


def launch(
    request: RunRequest,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 120.0,
    partitions: bool = False,
) -> Launched:
    """Start the request's run in the background (with `partitions`, `mflow runjob` of the
    request's job); return once it has a run id (None: runjob found no data ready)."""
    argv = runjob_argv(request) if partitions else run_argv(request)
    read, write = os.pipe()
    try:
        process = subprocess.Popen(
            [*argv, "--quiet", "--announce-fd", str(write)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(write,),
            start_new_session=True,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    finally:
        os.close(write)
    with os.fdopen(read, "rb") as announced:
        line = announced.readline()  # EOF: it exited, or closed the pipe, without a run
    if line.strip().isdigit() or line.strip() == b"-":
        assert process.stderr is not None
        process.stderr.close()  # it has pointed its own at /dev/null
        run_id = None if line.strip() == b"-" else int(line)
        return Launched(run_id, process.pid, process)
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    message = err.decode(errors="replace").strip() or f"mflow exited {process.returncode}"
    if "Traceback (most recent call last)" in message:  # a bug: its last line says what
        message = message.splitlines()[-1]
    raise LaunchError(message, process.returncode or 1)


def announce(fd: int, run_id: int | None) -> None:
    """In the launched mflow, once its run is taken: tell `launch` the id, then let go of the
    caller's pipes (stdout and stderr to /dev/null)."""
    try:
        os.write(fd, f"{'-' if run_id is None else run_id}\n".encode())  # -: no run (runjob)
    finally:
        os.close(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    finally:
        os.close(devnull)
