"""The ready-set loop: start what is ready, sleep until something ends, settle it, repeat.

A task becomes ready the moment its last dependency succeeds; it starts as soon as a slot is
free (never more than the concurrency limit running). There are no waves and no polling delay:
the loop sleeps in `ExitWatcher.wait` until a process ends, a worker thread hands back a result,
a signal arrives or a timer (timeout, kill escalation, retry, config re-read) is due.

Only this loop changes run state. Each transition is announced to the listeners (logs, console,
state store) in the order it happens, after the tasks it made ready have been started: writing
about a task's end does not delay its dependents.
"""

from __future__ import annotations

import heapq
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mflow import logs, taskenv
from mflow.errors import ExitCode, InvalidInput
from mflow.events import Event, Listener, RunEnded, RunNotice, RunStarted, TaskEnded, TaskStarted
from mflow.executors.base import SIGNALLED, Attempt, Executor, StartError
from mflow.executors.local import ProcessExecutor, ThreadExecutor
from mflow.process import ExitWatcher
from mflow.states import RunState, TaskState
from mflow.tasks import registry
from mflow.tasks.base import TaskContext, TaskResult

if TYPE_CHECKING:
    from mflow.config import Project, TaskSpec

MAX_RETRY_DELAY = 600.0
SWITCH_INTERVAL = 0.0005  # seconds; see Runner.run


@dataclass(frozen=True)
class Plan:
    """The tasks this run considers, in start-priority order, and what a resumed run has done."""

    tasks: tuple[str, ...]
    done: frozenset[str] = frozenset()
    attempts: Mapping[str, int] = field(default_factory=dict)


@dataclass
class Settings:
    run_id: int
    log_dir: Path
    concurrency: int
    concurrency_fixed: bool = False  # -j given: config re-reads do not change it
    fail_fast: bool = False
    state_url: str | None = None  # the store's real URL, for child runs
    state_display: str = ""
    parent_run_id: int | None = None
    parent_task_id: str | None = None
    resumed: bool = False
    log_tag: str | None = None  # the store's tag in task log names (logs.store_tag)


@dataclass(frozen=True)
class Outcome:
    state: RunState
    exit_code: ExitCode
    counts: dict[str, int]


class Runner:
    def __init__(
        self, project: Project, plan: Plan, settings: Settings, listeners: Listener
    ) -> None:
        self.project = project
        self.plan = plan
        self.settings = settings
        self.listeners = listeners
        self.events: list[Event] = []  # announced, not yet delivered (`_deliver`)
        self.emit = self.events.append
        self.concurrency = settings.concurrency
        tasks = project.dag.tasks
        in_plan = set(plan.tasks)
        self.priority = {tid: i for i, tid in enumerate(plan.tasks)}
        self.state = {
            tid: TaskState.SUCCESS if tid in plan.done else TaskState.NONE for tid in plan.tasks
        }
        self.attempts = {tid: plan.attempts.get(tid, 0) for tid in plan.tasks}
        # A dependency outside the plan (--oneshot, --target) counts as met.
        self.dependents: dict[str, list[str]] = {tid: [] for tid in plan.tasks}
        self.waiting: dict[str, int] = {}
        for tid in plan.tasks:
            deps = [d for d in tasks[tid].depends if d in in_plan]
            for dep in deps:
                self.dependents[dep].append(tid)
            self.waiting[tid] = sum(1 for d in deps if self.state[d] is not TaskState.SUCCESS)
        self.ready: list[tuple[int, str]] = [
            (self.priority[t], t)
            for t in plan.tasks
            if self.waiting[t] == 0 and self.state[t] is TaskState.NONE
        ]
        heapq.heapify(self.ready)
        self.running: dict[str, Attempt] = {}
        self.retries: list[tuple[float, str]] = []  # (monotonic due time, task id)
        self.watcher = ExitWatcher()
        # Where attempts run: a task that gives a command is a process, any other runs
        # in-process on a thread (see `_start`).
        self.processes: Executor
        self.threads: Executor
        if project.config.executor == "celery":  # every attempt to `mflow worker`s (SPEC §10)
            from mflow.executors.celery import CeleryExecutor

            self.processes = self.threads = CeleryExecutor(
                self.watcher, project, settings.state_url
            )
            self.executors: tuple[Executor, ...] = (self.processes,)
        else:
            self.processes = ProcessExecutor(self.watcher)
            self.threads = ThreadExecutor(self.watcher)
            self.executors = (self.processes, self.threads)
        self.stop_signal: int | None = None
        self.stop_reason: str | None = None  # why, announced once (`_cancel_all`)
        self.halted = False  # --fail-fast tripped
        self.base_env = taskenv.base_env(
            project,
            settings.run_id,
            settings.log_dir,
            settings.parent_run_id,
            settings.parent_task_id,
        )
        self.config_path = project.config.path
        self.check_interval = project.config.check_new_config_interval
        self.next_config_check = time.monotonic() + self.check_interval
        self.config_stamp = self._stamp()

    # ----------------------------------------------------------------- the loop

    def run(self) -> Outcome:
        started = time.time()
        # This thread mostly waits in system calls (spawning, poll) and must get the GIL back
        # at once when one returns; by default a busy thread (the store writer, a SQL task's
        # driver) keeps it for up to 5 ms, which halved the rate at which short tasks started.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        previous = self._install_signal_handlers()
        try:
            self._announce_start(started)
            while True:
                if self.stop_signal is None and not self.halted:
                    self._dispatch()
                self._deliver()
                if not self.running and (
                    self.stop_signal is not None or self.halted or not (self.ready or self.retries)
                ):
                    break
                self._step()
            self._wait_for_executors()
        finally:
            try:
                self._deliver()  # what happened before an error still reaches the store
            finally:
                self._restore_signal_handlers(previous)
                sys.setswitchinterval(switch_interval)
                for executor in self.executors:
                    executor.close()
                self.watcher.close()
        outcome = self._announce_end(started)
        self._deliver()
        return outcome

    def _deliver(self) -> None:
        """Hand the announced events to the listeners, in order, each once (even when a
        listener raises: the events after it are dropped, not delivered twice)."""
        events = self.events
        if events:
            handle = self.listeners.handle
            try:
                for event in events:
                    handle(event)
            finally:
                events.clear()

    def _step(self) -> None:
        self.listeners.flush()  # (the loop delivered the events just before)
        self.watcher.wait(self._next_timer())
        for executor in self.executors:
            for attempt, result in executor.collect():
                if self.running.get(attempt.spec.id) is not attempt:
                    continue  # given up on already (it ignored its cancellation)
                if attempt.timed_out or attempt.cancelled:
                    result = self._interpret(attempt, result)
                self._settle(attempt, result)
        self._run_timers()

    def _next_timer(self) -> float:
        now = time.monotonic()
        due = [self.next_config_check]
        due += [a.deadline for a in self.running.values() if a.deadline and not a.timed_out]
        due += [a.kill_at for a in self.running.values() if a.kill_at]
        for executor in self.executors:
            when = executor.next_due()
            if when is not None:
                due.append(when)
        if self.retries:
            due.append(self.retries[0][0])
        return max(0.0, min(due) - now)

    def _run_timers(self) -> None:
        now = time.monotonic()
        if self.stop_signal is not None:
            self._cancel_all()
        for attempt in list(self.running.values()):
            if attempt.deadline and not attempt.timed_out and now >= attempt.deadline:
                attempt.timed_out = True
                self._terminate(attempt, now)
            elif attempt.kill_at and now >= attempt.kill_at:
                self._kill(attempt)
        for executor in self.executors:
            executor.tick(now)
        while self.retries and self.retries[0][0] <= now:
            _, tid = heapq.heappop(self.retries)
            if self.stop_signal is None and not self.halted:
                heapq.heappush(self.ready, (self.priority[tid], tid))
        if now >= self.next_config_check:
            self._reread_config()
            self.next_config_check = now + self.check_interval

    # ----------------------------------------------------------------- starting

    def _dispatch(self) -> None:
        while self.ready and len(self.running) < self.concurrency:
            _, tid = heapq.heappop(self.ready)
            self._start(self.project.dag.tasks[tid])

    def _start(self, spec: TaskSpec) -> None:
        attempt = self._prepare(spec)
        if attempt is None:
            return  # it could not be prepared: settled already
        executor = self.processes if attempt.command is not None else self.threads
        attempt.executor = executor
        try:
            executor.start(attempt)
        except StartError as exc:
            self._emit_started(attempt)
            self._settle(attempt, TaskResult.failure(str(exc), exc.exit_code))
            return
        self._emit_started(attempt)

    def _prepare(self, spec: TaskSpec) -> Attempt | None:
        """The next attempt of a task: its context and what it runs. A task that cannot be
        prepared (an unset variable, a plugin's bug) is settled as FAILED here."""
        number = self.attempts[spec.id] + 1
        self.attempts[spec.id] = number
        self.state[spec.id] = TaskState.RUNNING
        settings = self.settings
        log_path = logs.task_log_path(settings.log_dir, settings.run_id, spec.id, settings.log_tag)
        task_type = registry.get(spec.type)
        ctx = TaskContext(
            run_id=self.settings.run_id,
            task_id=spec.id,
            attempt=number,
            log_path=log_path,
            env=taskenv.task_env(self.base_env, spec, number),
            project=self.project,
            state_url=self.settings.state_url,
            timeout=spec.timeout,
            cancelled=SIGNALLED,  # until an executor that runs it in-process gives it its own
        )
        attempt = Attempt(spec, number, time.time(), str(log_path), ctx, task_type, None, "")
        attempt.earlier = self.plan.attempts.get(spec.id, 0)
        if spec.timeout is not None:
            attempt.deadline = time.monotonic() + spec.timeout
        self.running[spec.id] = attempt
        try:
            attempt.command = command = task_type.command(spec, ctx)
            attempt.shown = command.display if command else task_type.describe(spec, ctx)
        except Exception as exc:  # a late input problem (unset variable...) or a plugin bug
            try:
                fd = logs.open_task_log(log_path)
            except OSError:
                fd = None  # the reason still says why
            if fd is not None:
                try:
                    os.write(fd, f"mflow: cannot prepare the task: {exc}\n".encode())
                finally:
                    os.close(fd)
            attempt.shown = spec.type
            self._emit_started(attempt)
            self._settle(attempt, TaskResult.failure(f"cannot prepare the task: {exc}"))
            return None
        return attempt

    def _emit_started(self, attempt: Attempt) -> None:
        self.emit(
            TaskStarted(
                self.settings.run_id,
                attempt.spec.id,
                attempt.number,
                attempt.pid,
                attempt.log_file,
                attempt.shown,
                attempt.started,
            )
        )

    # ----------------------------------------------------------------- settling

    def _interpret(self, attempt: Attempt, result: TaskResult) -> TaskResult:
        """What an attempt's end means once it was timed out or cancelled."""
        code = result.exit_code
        how = result.reason or (f"exit code {code}" if code is not None else "ended")
        if attempt.cancelled:
            return TaskResult(TaskState.CANCELLED, code, f"cancelled ({how})")
        return TaskResult.failure(f"timed out after {logs.seconds(attempt.spec.timeout)}", code)

    def _settle(self, attempt: Attempt, result: TaskResult) -> None:
        spec = attempt.spec
        del self.running[spec.id]
        state, retry_in = result.state, None
        if state is TaskState.FAILED and self._may_retry(attempt):
            retry_in = min(spec.retry_delay * 2 ** (attempt.tries - 1), MAX_RETRY_DELAY)
            heapq.heappush(self.retries, (time.monotonic() + retry_in, spec.id))
        self.state[spec.id] = state if retry_in is None else TaskState.NONE
        pid = attempt.pid
        self.emit(
            TaskEnded(
                self.settings.run_id,
                spec.id,
                attempt.number,
                state,
                result.exit_code,
                result.reason,
                attempt.started,
                time.time(),
                attempt.log_file,
                retry_in,
                pid,
            )
        )
        if state is TaskState.SUCCESS:
            for dependent in self.dependents[spec.id]:
                self.waiting[dependent] -= 1
                if self.waiting[dependent] == 0 and self.state[dependent] is TaskState.NONE:
                    heapq.heappush(self.ready, (self.priority[dependent], dependent))
        elif state is TaskState.FAILED and retry_in is None:
            self._fail_downstream(spec.id)
            if self.settings.fail_fast and not self.halted:
                self.halted = True
                self._notice(
                    "WARNING",
                    f"--fail-fast: task {spec.id} failed; "
                    "starting nothing new, waiting for running tasks",
                )

    def _may_retry(self, attempt: Attempt) -> bool:
        """Retries count within this run of the task: a resumed run tries again `retries`
        times, though the attempt numbers go on from where the earlier run stopped."""
        return (
            attempt.tries <= attempt.spec.retries and self.stop_signal is None and not self.halted
        )

    def _fail_downstream(self, failed: str) -> None:
        stack = list(self.dependents[failed])
        now = time.time()
        while stack:
            tid = stack.pop()
            if self.state[tid] is not TaskState.NONE:
                continue
            self.state[tid] = TaskState.UPSTREAM_FAILED
            self.emit(
                TaskEnded(
                    self.settings.run_id,
                    tid,
                    self.attempts[tid],
                    TaskState.UPSTREAM_FAILED,
                    None,
                    f"upstream '{failed}' failed",
                    None,
                    now,
                    None,
                )
            )
            stack.extend(self.dependents[tid])

    # ----------------------------------------------------------------- stopping

    def _terminate(self, attempt: Attempt, now: float) -> None:
        """Ask the attempt to stop; it is killed at the end of its type's grace period."""
        attempt.kill_at = now + attempt.task_type.kill_grace
        assert attempt.executor is not None
        attempt.executor.terminate(attempt)

    def _kill(self, attempt: Attempt) -> None:
        attempt.kill_at = None
        assert attempt.executor is not None
        if attempt.executor.kill(attempt):  # it cannot be killed: stop waiting for it
            gone = TaskResult.failure("did not stop within the grace period")
            self._settle(attempt, self._interpret(attempt, gone))

    def _cancel_all(self) -> None:
        if self.stop_reason is not None:
            running = logs.count(len(self.running), "running task")
            self._notice("WARNING", f"{self.stop_reason}: cancelling {running}")
            self.stop_reason = None
        now = time.monotonic()
        for attempt in list(self.running.values()):
            if not attempt.cancelled:
                attempt.cancelled = True
                self._terminate(attempt, now)

    def request_stop(self, who: str) -> None:
        """Stop the run as SIGTERM would (any thread may call it): `mflow stop`."""
        if self.stop_signal is None:
            self.stop_reason = f"stop requested by {who}"
            self.stop_signal = signal.SIGTERM
        self.watcher.wake()

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stop_signal is None:
            self.stop_reason = f"{signal.Signals(signum).name} received"
            self.stop_signal = signum
        else:  # a second signal: no more grace
            for attempt in self.running.values():
                attempt.kill_at = time.monotonic()
        self.watcher.wake()

    def _install_signal_handlers(self) -> dict[int, Any] | None:
        if threading.current_thread() is not threading.main_thread():
            return None
        previous: dict[int, Any] = {
            s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)
        }
        previous[0] = signal.set_wakeup_fd(self.watcher.wakeup_fd)
        return previous

    def _restore_signal_handlers(self, previous: dict[int, Any] | None) -> None:
        if previous is None:
            return
        signal.set_wakeup_fd(previous.pop(0))
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _wait_for_executors(self) -> None:
        """Process groups outliving a cancelled task's leader are killed before the run ends."""
        while any(executor.busy() for executor in self.executors):
            self.watcher.wait(0.05)
            self._run_timers()

    # ----------------------------------------------------------------- environment, config

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.config_path) if self.config_path else None
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size) if st else None

    def _reread_config(self) -> None:
        stamp = self._stamp()
        if stamp == self.config_stamp or self.config_path is None:
            return
        self.config_stamp = stamp
        from mflow.project import load_config

        try:
            config = load_config(self.config_path)
        except InvalidInput as exc:
            self._notice("WARNING", f"config re-read failed, keeping the current values: {exc}")
            return
        self.check_interval = config.check_new_config_interval
        if config.max_process_concurrency != self.concurrency:
            if self.settings.concurrency_fixed:
                return
            self._notice(
                "INFO",
                f"max_process_concurrency {self.concurrency} -> "
                f"{config.max_process_concurrency} (from {self.config_path})",
            )
            self.concurrency = config.max_process_concurrency

    def _notice(self, level: str, message: str) -> None:
        self.emit(RunNotice(self.settings.run_id, level, message, time.time()))

    # ----------------------------------------------------------------- start and end

    def _announce_start(self, started: float) -> None:
        project, s = self.project, self.settings
        self.emit(
            RunStarted(
                run_id=s.run_id,
                dag=project.dag.name,
                taskfile=str(project.dag.path),
                config=str(project.config.path) if project.config.path else None,
                datasources=str(project.datasources.path) if project.datasources.path else None,
                state_url=s.state_display,
                log_directory=str(s.log_dir),
                tasks=len(self.plan.tasks),
                concurrency=self.concurrency,
                time=started,
                resumed=s.resumed,
                done=len(self.plan.done),
                parent_run_id=s.parent_run_id,
                parent_task_id=s.parent_task_id,
            )
        )

    def _announce_end(self, started: float) -> Outcome:
        s = self.settings
        counts = {state.value: 0 for state in TaskState}
        for state in self.state.values():
            counts[state.value] += 1
        if self.stop_signal is not None:
            run_state = RunState.CANCELLED
            code = ExitCode.SIGINT if self.stop_signal == signal.SIGINT else ExitCode.SIGTERM
        elif counts[TaskState.SUCCESS.value] == len(self.state):
            run_state, code = RunState.SUCCESS, ExitCode.OK
        else:
            run_state, code = RunState.FAILED, ExitCode.TASK_FAILED
        failed = tuple(
            (tid, str(logs.task_log_path(s.log_dir, s.run_id, tid, s.log_tag)))
            for tid, state in self.state.items()
            if state in (TaskState.FAILED, TaskState.CANCELLED)
        )
        self.emit(
            RunEnded(
                run_id=self.settings.run_id,
                state=run_state,
                counts={k: v for k, v in counts.items() if v},
                started=started,
                time=time.time(),
                exit_code=int(code),
                failed=failed,
            )
        )
        return Outcome(run_state, code, counts)
