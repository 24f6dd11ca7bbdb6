"""`mflow worker` (SPEC §10): a Celery worker that runs the attempts a coordinating run sends.

An attempt arrives as plain data (`mflow.executors.celery.payload`): the task's definition,
its run, attempt and log path, the run's `MFLOW_*` variables and config.json's `env`. The
worker builds the task as the coordinator would, with its own datasources and its own
environment (no password crosses the broker), and runs it through the same machinery as a
local run: a command in a process group of its own (`mflow.process`), output appended to the
task log; an in-process task (SQL, TigerGraph) on a thread with a cancel event. It enforces
the task's timeout itself (SIGTERM to the group, SIGKILL after the type's grace period), stops
the group when the coordinator revokes the attempt (SIGTERM to the pool process, forwarded),
and kills it if the worker process above it dies. It reports an outcome, never raises.

A message delivered again after the worker that took it was lost (SIGKILL, a machine gone)
is answered "worker lost" without running: the coordinator retries per the task's `retries`
or records FAILED, so an attempt is counted once and never runs twice under one number.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    from mflow.config import Config, Datasources, Project, TaskSpec

POLL = 0.2  # seconds between looks at the process, the deadline and the parent
WORKER_LOST = "worker lost"


@dataclass(frozen=True)
class WorkerFiles:
    config: Config
    datasources: Datasources


def outcome(
    exit_code: int | None,
    reason: str | None = None,
    *,
    timed_out: bool = False,
    cancelled: bool = False,
    pid: int | None = None,
) -> dict[str, Any]:
    return {
        "ok": exit_code == 0 and not timed_out and not cancelled and reason is None,
        "exit_code": exit_code,
        "reason": reason,
        "timed_out": timed_out,
        "cancelled": cancelled,
        "host": socket.gethostname(),
        "pid": pid,
    }


def _spec(data: dict[str, Any]) -> TaskSpec:
    from mflow.config import Source, TaskSpec

    return TaskSpec(
        id=data["id"],
        type=data["type"],
        retries=int(data.get("retries", 0)),
        retry_delay=float(data.get("retry_delay", 10.0)),
        timeout=data.get("timeout"),
        env=tuple((k, v) for k, v in data.get("env", [])),
        cwd=Path(data["cwd"]) if data.get("cwd") else None,
        fields=MappingProxyType(dict(data.get("fields", {}))),
        source=Source(data.get("file", ""), data.get("json_path", "$")),
        base_dir=Path(data.get("base_dir", ".")),
    )


def _project(files: WorkerFiles, spec: TaskSpec, payload: dict[str, Any]) -> Project:
    from mflow.config import Dag, Project

    dag = Dag(
        name=payload.get("dag", "remote"),
        path=Path(payload.get("taskfile", "tasks.json")),
        tasks=MappingProxyType({spec.id: spec}),
    )
    return Project(files.config, dag, files.datasources, payload.get("taskfile", ""))


def _environment(files: WorkerFiles, spec: TaskSpec, payload: dict[str, Any]) -> dict[str, str]:
    """This worker's environment without its secrets, then the run's config.json `env` (as
    the coordinator read it), the task's `env`, and the run's MFLOW_* variables."""
    from mflow.config import expand_vars
    from mflow.secrets import PASSKEY_ENV, mask_url, secret_variables
    from mflow.taskenv import CHILD_ENV

    hidden = {PASSKEY_ENV} | secret_variables(files.datasources.fields())
    env = {k: v for k, v in os.environ.items() if k not in hidden and k not in CHILD_ENV}
    if mask_url(env.get("MFLOW_STATE", "")) != env.get("MFLOW_STATE", ""):
        del env["MFLOW_STATE"]
    for key, value in payload.get("config_env", []):
        env[key] = expand_vars(value, env)
    for key, value in spec.env:
        env[key] = expand_vars(value, env)
    env.update(payload.get("mflow_env", {}))
    return env


def run_attempt(
    payload: dict[str, Any], files: WorkerFiles, cancel: threading.Event
) -> dict[str, Any]:
    """Run one attempt to its end; the outcome as plain data."""
    from mflow.tasks import registry
    from mflow.tasks.base import TaskContext

    spec = _spec(payload["spec"])
    log_path = Path(payload["log_path"])
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        task_type = registry.get(spec.type)
        ctx = TaskContext(
            run_id=int(payload["run_id"]),
            task_id=spec.id,
            attempt=int(payload["attempt"]),
            log_path=log_path,
            env=_environment(files, spec, payload),
            project=_project(files, spec, payload),
            state_url=payload.get("state_url"),
            timeout=spec.timeout,
            cancelled=cancel,
        )
        command = task_type.command(spec, ctx)
    except Exception as exc:  # an unknown type here, an unset variable, a plugin bug
        _note(log_path, f"mflow worker {socket.gethostname()}: cannot prepare the task: {exc}")
        return outcome(None, f"cannot prepare the task on {socket.gethostname()}: {exc}")
    grace = float(payload.get("grace", task_type.kill_grace))
    if command is None:
        return _run_in_thread(task_type, spec, ctx, grace)
    return _run_process(command, log_path, spec.timeout, grace, cancel)


def _note(path: Path, line: str) -> None:
    from mflow import logs

    try:
        fd = logs.open_task_log(path)
    except OSError:
        return
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _run_process(
    command: Any, log_path: Path, timeout: float | None, grace: float, cancel: threading.Event
) -> dict[str, Any]:
    from mflow import logs
    from mflow.process import ExitWatcher, GroupWatchdog, SpawnError, describe_exit, exit_code

    watcher = ExitWatcher()
    parent = os.getppid()
    try:
        fd = logs.open_task_log(log_path)
        try:
            proc = watcher.start(command.argv, command.env, command.cwd, fd)
        finally:
            os.close(fd)
    except SpawnError as exc:
        _note(log_path, f"mflow: {exc}")
        watcher.close()
        return outcome(exc.exit_code, str(exc))
    except OSError as exc:
        watcher.close()
        return outcome(None, f"cannot open the task log {log_path}: {exc.strerror}")
    deadline = time.monotonic() + timeout if timeout is not None else None
    kill_at: float | None = None
    timed_out = cancelled = False
    guard = GroupWatchdog(proc.pid, grace)
    try:
        while True:
            watcher.wait(POLL)
            if watcher.take_ended():
                break
            now = time.monotonic()
            if os.getppid() != parent:  # the worker above this pool process is gone
                proc.signal_group(signal.SIGKILL)
                cancelled = True
                kill_at = kill_at or now
            if kill_at is None and (cancel.is_set() or (deadline is not None and now >= deadline)):
                timed_out = not cancel.is_set()
                cancelled = cancel.is_set()
                proc.signal_group(signal.SIGTERM)
                kill_at = now + grace
            elif kill_at is not None and now >= kill_at:
                proc.signal_group(signal.SIGKILL)
        if (timed_out or cancelled) and proc.group_alive():
            proc.signal_group(signal.SIGKILL)  # the leader is gone, its children are not
    finally:
        guard.release()
        watcher.close()
    rc = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    reason = None if rc == 0 else describe_exit(rc)
    return outcome(exit_code(rc), reason, timed_out=timed_out, cancelled=cancelled, pid=proc.pid)


def _run_in_thread(task_type: Any, spec: TaskSpec, ctx: Any, grace: float) -> dict[str, Any]:
    """An in-process task (SQL, TigerGraph) on a thread: cancelled through its event at the
    deadline or on revoke; reported as not stopping after the grace period."""
    import traceback

    from mflow import logs

    result: list[Any] = []

    def body() -> None:
        try:
            fd = logs.open_task_log(ctx.log_path)
            with os.fdopen(fd, "a", buffering=1, encoding="utf-8", errors="replace") as log:
                try:
                    result.append(task_type.run(spec, ctx, log))
                except Exception as exc:  # a bug in the task type
                    log.write(traceback.format_exc())
                    result.append(exc)
        except OSError as exc:
            result.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    deadline = time.monotonic() + spec.timeout if spec.timeout is not None else None
    timed_out = False
    give_up: float | None = None
    while thread.is_alive():
        thread.join(POLL)
        now = time.monotonic()
        if give_up is None and (ctx.cancelled.is_set() or (deadline and now >= deadline)):
            timed_out = not ctx.cancelled.is_set()
            ctx.cancelled.set()
            give_up = now + grace
        elif give_up is not None and now >= give_up:
            return outcome(None, "did not stop within the grace period", timed_out=timed_out)
    cancelled = ctx.cancelled.is_set() and not timed_out
    found = result[0] if result else None
    if isinstance(found, BaseException):
        return outcome(None, f"{type(found).__name__}: {found}")
    if found is None:
        return outcome(None, "the task reported nothing")
    from mflow.states import TaskState

    ok = found.state is TaskState.SUCCESS
    code = found.exit_code if found.exit_code is not None else (0 if ok else None)
    reason = None if ok else (found.reason or "failed")
    return outcome(code, reason, timed_out=timed_out, cancelled=cancelled)


# ------------------------------------------------------------------ the Celery side


def install(app: Celery, files: WorkerFiles) -> None:
    """Register the task that runs attempts on `app`."""

    @app.task(name="mflow.run_attempt", bind=True)  # celery_app.TASK_NAME
    def run(self: Any, payload: dict[str, Any]) -> dict[str, Any]:
        earlier = _earlier(self)
        if isinstance(earlier, dict):
            return earlier
        if earlier == WORKER_LOST:
            # Started before by a worker that is gone: do not run it a second time under the
            # same attempt number; the coordinator decides (retries, or FAILED).
            _note(
                Path(payload["log_path"]),
                f"mflow worker {socket.gethostname()}: {WORKER_LOST}: this attempt was started "
                "by a worker that died; not run again here",
            )
            return outcome(None, WORKER_LOST)
        self.update_state(state=RUNNING, meta={"host": socket.gethostname(), "pid": os.getpid()})
        cancel = threading.Event()

        def on_term(signum: int, frame: object) -> None:  # revoke(terminate=True), or the
            cancel.set()  # worker above died (pdeathsig below)

        previous = signal.signal(signal.SIGTERM, on_term)
        death = _pdeathsig(signal.SIGTERM)  # Celery sets SIGKILL: the task's group would live on
        try:
            return run_attempt(payload, files, cancel)
        finally:
            _pdeathsig(death)
            signal.signal(signal.SIGTERM, previous)


RUNNING = "RUNNING"  # the state a worker records when it starts an attempt


def _earlier(task: Any) -> str | dict[str, Any] | None:
    """What became of an earlier delivery of this message: None (there was none, or nobody
    started it: run it), WORKER_LOST (a worker started it and died: its state still says
    RUNNING), or the outcome it already reported (a Redis visibility timeout shorter than the
    task: never run twice). With the rpc:// backend states cannot be read here: a redelivered
    message counts as lost."""
    info = task.request.delivery_info or {}
    if not info.get("redelivered"):
        return None
    backend = task.app.backend
    if type(backend).__name__ == "RPCBackend":
        return WORKER_LOST
    try:
        meta = backend.get_task_meta(task.request.id)
    except Exception:
        return WORKER_LOST
    if meta.get("status") == RUNNING:
        return WORKER_LOST
    if meta.get("status") == "SUCCESS" and isinstance(meta.get("result"), dict):
        return meta["result"]  # type: ignore[no-any-return]
    return None


def _pdeathsig(signum: int | None) -> int | None:
    """Set the signal this process gets when its parent dies; the one it had (Linux)."""
    try:
        from billiard.util import get_pdeathsig, set_pdeathsig

        before = get_pdeathsig()
        if signum is not None:
            set_pdeathsig(signum)
        return before  # type: ignore[no-any-return]
    except (ImportError, OSError):
        return None


def run_worker(
    files: WorkerFiles, queues: list[str], concurrency: int, name: str | None = None
) -> None:
    """Start a Celery worker on this machine; returns when it is stopped (SIGTERM, Ctrl-C)."""
    from mflow.errors import ConfigError
    from mflow.executors.celery_app import make_app, visibility

    config = files.config
    if not config.broker:
        raise ConfigError(
            "mflow worker needs a broker: config.json has no 'broker'",
            file=str(config.path or "config.json"),
            json_path="$.broker",
            hint='e.g. {"executor": "celery", "broker": "redis://127.0.0.1:6379/0"}',
        )
    app = make_app(
        config.broker,
        config.result_backend,
        visibility(config.visibility_timeout, config.timeout),
    )
    install(app, files)
    hostname = name or f"mflow@{socket.gethostname()}-{os.getpid()}"
    worker = app.Worker(
        hostname=hostname,
        queues=queues,
        concurrency=concurrency,
        pool="prefork",
        loglevel="WARNING",
        without_gossip=True,
        without_mingle=False,
        optimization="fair",
    )
    worker.start()
    code = getattr(worker, "exitcode", 0) or 0
    if code:
        raise SystemExit(code)
