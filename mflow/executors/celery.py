"""The Celery executor (SPEC §10): each attempt is a message on a Celery queue, run by an
`mflow worker` somewhere; the run that sent it stays the one store of record.

The runner calls `start`, `collect`, `terminate` and `kill` on its own thread, as for local
attempts; none of them touches the network. One dispatcher thread owns the Celery client: it
sends the attempts (`send_task` on the task's `queue`, default `mflow`), revokes the ones the
runner stops (`revoke(terminate=True)`: the worker forwards SIGTERM to the task's process
group and kills it after the grace period), and polls their outcomes, which it hands to the
runner (`watcher.wake()`). One thread because Celery's rpc:// backend delivers replies to the
thread that sent the task.

The coordinator writes the attempt's header in the task log; the worker appends the output to
the same path, so `mflow logs`, the API and the web view read it as any log: the log
directory is shared (one machine, or a network file system mounted at the same path).

Timeouts are enforced on the worker, from when it starts the task. The runner's own deadline
is moved later by the grace period and QUEUE_SLACK: a backstop for an attempt no worker took.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mflow.executors.base import Attempt, Executor, StartError, open_log
from mflow.tasks.base import TaskResult

if TYPE_CHECKING:
    from mflow.config import Project
    from mflow.process import ExitWatcher

QUEUE_SLACK = 60.0  # seconds the coordinator waits beyond a task's timeout and grace
POLL = 0.02  # seconds between looks at the outcomes of attempts in flight


def payload(attempt: Attempt, project: Project, state_url: str | None) -> dict[str, Any]:
    """What a worker needs to run the attempt: plain JSON, no password (the worker uses its
    own datasources and environment)."""
    from mflow.secrets import mask_url

    spec = attempt.spec
    mflow_env = {
        k: v
        for k, v in attempt.ctx.env.items()
        if k.startswith("MFLOW_") and k != "MFLOW_STATE" and k != "MFLOW_PASSKEY"
    }
    if state_url and mask_url(state_url) == state_url:
        mflow_env["MFLOW_STATE"] = state_url
    else:
        state_url = None  # the worker's own MFLOW_STATE / config.json, for child runs
    return {
        "run_id": attempt.ctx.run_id,
        "attempt": attempt.number,
        "log_path": str(attempt.ctx.log_path),
        "dag": project.dag.name,
        "taskfile": str(project.dag.path),
        "state_url": state_url,
        "grace": attempt.task_type.kill_grace,
        "config_env": [list(pair) for pair in project.config.env],
        "mflow_env": mflow_env,
        "spec": {
            "id": spec.id,
            "type": spec.type,
            "retries": spec.retries,
            "retry_delay": spec.retry_delay,
            "timeout": spec.timeout,
            "env": [list(pair) for pair in spec.env],
            "cwd": str(spec.cwd) if spec.cwd else None,
            "fields": dict(spec.fields),
            "file": spec.source.file,
            "json_path": spec.source.json_path,
            "base_dir": str(spec.base_dir),
        },
    }


class CeleryExecutor(Executor):
    """Attempts of every task type, run by `mflow worker`s through a Celery broker."""

    def __init__(self, watcher: ExitWatcher, project: Project, state_url: str | None) -> None:
        from mflow.executors.celery_app import make_app, visibility

        super().__init__(watcher)
        config = project.config
        assert config.broker is not None  # the config schema requires it with celery
        timeouts = [s.timeout for s in project.dag.tasks.values() if s.timeout is not None]
        self.app = make_app(
            config.broker,
            config.result_backend,
            visibility(config.visibility_timeout, max(timeouts, default=None)),
        )
        self.project = project
        self.state_url = state_url
        self.commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.ended: queue.SimpleQueue[tuple[Attempt, TaskResult]] = queue.SimpleQueue()
        self.failed_send: str | None = None
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._dispatch, name="celery", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------ the runner's thread

    def start(self, attempt: Attempt) -> None:
        import os

        if self.failed_send is not None:
            raise StartError(self.failed_send)
        os.close(open_log(attempt))  # the header, as for a local attempt
        attempt.handle = f"mflow-{attempt.ctx.run_id}-{attempt.number}-{uuid.uuid4().hex}"
        if attempt.deadline is not None:
            attempt.deadline += attempt.task_type.kill_grace + QUEUE_SLACK
        self.commands.put(("send", attempt))

    def collect(self) -> Iterable[tuple[Attempt, TaskResult]]:
        if self.ended.empty():
            return ()
        found = []
        while True:
            try:
                found.append(self.ended.get_nowait())
            except queue.Empty:
                return found

    def terminate(self, attempt: Attempt) -> None:
        self.commands.put(("revoke", attempt))

    def kill(self, attempt: Attempt) -> bool:
        # The worker kills the group itself at the end of the grace period it was sent; a
        # worker that does not answer is not waited for any longer.
        return True

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=10)

    # ------------------------------------------------------------ the dispatcher thread

    def _dispatch(self) -> None:
        from celery.result import AsyncResult

        queue_of = {}
        flying: dict[str, tuple[Attempt, AsyncResult]] = {}
        while not (self.closed.is_set() and self.commands.empty()):
            try:
                kind, attempt = self.commands.get(timeout=POLL)
            except queue.Empty:
                kind = ""
            try:
                if kind == "send":
                    spec = attempt.spec
                    name = queue_of.setdefault(spec.id, spec.fields.get("queue") or "mflow")
                    result = self.app.send_task(
                        "mflow.run_attempt",
                        args=[payload(attempt, self.project, self.state_url)],
                        queue=name,
                        task_id=attempt.handle,
                    )
                    flying[attempt.handle] = (attempt, result)
                elif kind == "revoke" and attempt.handle in flying:
                    self.app.control.revoke(attempt.handle, terminate=True, signal="SIGTERM")
                if not self.commands.empty():
                    continue  # send what is queued before polling
                for key, (attempt, result) in list(flying.items()):
                    if result.ready():
                        del flying[key]
                        self._report(attempt, result)
            except Exception as exc:  # the broker or the backend is gone
                self._broken(exc, flying)
                flying.clear()

    def _report(self, attempt: Attempt, result: Any) -> None:
        from mflow.worker import WORKER_LOST

        state = result.state
        if state == "SUCCESS" and isinstance(result.result, dict):
            found = result.result
            if found.get("timed_out"):
                attempt.timed_out = True
            host = found.get("host")
            if found.get("ok"):
                outcome = TaskResult.success(found.get("exit_code", 0))
            else:
                reason = found.get("reason") or "failed"
                if reason == WORKER_LOST:
                    reason = f"{WORKER_LOST} (the worker that took it died; {host} refused it)"
                outcome = TaskResult.failure(reason, found.get("exit_code"))
        elif state == "REVOKED":
            outcome = TaskResult.failure("revoked on the worker")
        else:
            outcome = TaskResult.failure(f"the worker failed: {result.result!r}"[:500])
        self.ended.put((attempt, outcome))
        self.watcher.wake()

    def _broken(self, exc: Exception, flying: dict[str, Any]) -> None:
        from mflow.secrets import mask_url

        message = mask_url(f"the Celery broker or result backend failed: {exc}")[:500]
        self.failed_send = message
        for attempt, _ in list(flying.values()):
            self.ended.put((attempt, TaskResult.failure(message)))
        while True:  # attempts not sent yet
            try:
                kind, attempt = self.commands.get_nowait()
            except queue.Empty:
                break
            if kind == "send":
                self.ended.put((attempt, TaskResult.failure(message)))
        self.watcher.wake()
        time.sleep(POLL)
