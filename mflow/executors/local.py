"""The two executors of this machine: a task as a process, or a task on a worker thread.

`ProcessExecutor` starts the attempt's command through `mflow.process` (its own session, output
straight to the log descriptor) and learns of its end from the `ExitWatcher` the runner sleeps
on. A timed-out or cancelled process whose leader exits while the rest of its group lives on
is followed until the group is gone (SIGKILL at the end of the grace period).

`ThreadExecutor` calls `TaskType.run` on a daemon thread with the log as a text file; it is
told to stop through the context's `cancelled` event, its own, and since a thread cannot be
killed, the runner stops waiting for it after the grace period.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, TextIO

from mflow.executors.base import Attempt, Executor, StartError, open_log
from mflow.process import SpawnError, describe_exit, exit_code
from mflow.tasks.base import TaskResult

if TYPE_CHECKING:
    from mflow.process import ExitWatcher, Process


class ProcessExecutor(Executor):
    """Attempts whose task type gives a command: one process group each."""

    def __init__(self, watcher: ExitWatcher) -> None:
        super().__init__(watcher)
        self.by_pid: dict[int, Attempt] = {}
        self.lingering: list[tuple[float, Process]] = []  # groups outliving their leader

    def start(self, attempt: Attempt) -> None:
        command = attempt.command
        assert command is not None
        fd = open_log(attempt)
        try:
            proc = self.watcher.start(command.argv, command.env, command.cwd, fd)
        except SpawnError as exc:
            os.write(fd, f"mflow: {exc}\n".encode())
            raise StartError(str(exc), exc.exit_code) from None
        finally:
            os.close(fd)
        attempt.handle = proc
        attempt.pid = proc.pid
        self.by_pid[proc.pid] = attempt

    def collect(self) -> Iterable[tuple[Attempt, TaskResult]]:
        ended = self.watcher.take_ended()
        if not ended:
            return ()
        by_pid = self.by_pid
        results = []
        for proc in ended:
            attempt = by_pid.pop(proc.pid)
            rc = proc.returncode if proc.returncode is not None else -signal.SIGKILL
            if (attempt.timed_out or attempt.cancelled) and proc.group_alive():
                # The leader is gone but part of its tree is not: finish the job later.
                self.lingering.append((attempt.kill_at or time.monotonic(), proc))
            if rc == 0:
                results.append((attempt, TaskResult.success(0)))
            else:
                results.append((attempt, TaskResult.failure(describe_exit(rc), exit_code(rc))))
        return results

    def terminate(self, attempt: Attempt) -> None:
        attempt.handle.signal_group(signal.SIGTERM)

    def kill(self, attempt: Attempt) -> bool:
        attempt.handle.signal_group(signal.SIGKILL)
        return False  # its end comes through the watcher

    def next_due(self) -> float | None:
        if not self.lingering:
            return None
        return min(t for t, _ in self.lingering)

    def tick(self, now: float) -> None:
        if not self.lingering:
            return
        still = []
        for kill_at, proc in self.lingering:
            if now >= kill_at:
                proc.signal_group(signal.SIGKILL)
            elif proc.group_alive():
                still.append((kill_at, proc))
        self.lingering = still

    def busy(self) -> bool:
        return bool(self.lingering)


class ThreadExecutor(Executor):
    """Attempts that run in this process (`TaskType.run`), each on a daemon thread."""

    def __init__(self, watcher: ExitWatcher) -> None:
        super().__init__(watcher)
        self.results: queue.SimpleQueue[tuple[Attempt, TaskResult]] = queue.SimpleQueue()

    def start(self, attempt: Attempt) -> None:
        attempt.ctx = replace(attempt.ctx, cancelled=threading.Event())  # see SIGNALLED
        fd = open_log(attempt)
        log = os.fdopen(fd, "a", buffering=1, encoding="utf-8", errors="replace")
        thread = threading.Thread(target=self._run, args=(attempt, log), daemon=True)
        attempt.handle = thread
        thread.start()

    def _run(self, attempt: Attempt, log: TextIO) -> None:
        try:
            result = attempt.task_type.run(attempt.spec, attempt.ctx, log)
        except Exception as exc:  # a bug in the task type must not take the run down
            log.write(traceback.format_exc())
            result = TaskResult.failure(f"{type(exc).__name__}: {exc}")
        finally:
            log.close()
        self.results.put((attempt, result))
        self.watcher.wake()

    def collect(self) -> Iterable[tuple[Attempt, TaskResult]]:
        if self.results.empty():
            return ()
        results = []
        while True:
            try:
                results.append(self.results.get_nowait())
            except queue.Empty:
                return results

    def terminate(self, attempt: Attempt) -> None:
        attempt.ctx.cancelled.set()

    def kill(self, attempt: Attempt) -> bool:
        return True  # a thread cannot be killed: stop waiting for it
