"""Recording a run in the store without slowing it down: a writer thread with group commit.

The runner hands every transition to `StoreWriter.handle`, which only queues it. The writer
thread takes whatever has queued up since its last commit and writes it as one transaction, so
a burst of a hundred short tasks costs a handful of commits, not two hundred. One thread, one
queue, in order: a task's SUCCESS is durable before any record of what its dependents did.
The same thread keeps the run's heartbeat and looks for stop requests (`mflow stop` from
another host) every few seconds.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING

from mflow.events import Event, RunEnded, TaskEnded, TaskStarted
from mflow.state.base import HEARTBEAT_INTERVAL, StateStore, TaskRecord, this_host
from mflow.states import RunState, TaskState

if TYPE_CHECKING:
    from collections.abc import Callable

_RETRY_FOR = 120.0  # seconds a failing store is retried before the writer gives up
# Least time between two commits. Transactions, not rows, are what a store charges for: while
# tasks end by the hundred per second, waiting this long gathers them into one transaction,
# and each commit is a burst of this thread's Python that keeps the runner from the GIL (20 ms
# made a run of 10,000 short tasks ~6 % slower: bench/README.md). It is also the longest a
# transition waits before it is durable (plus the commit itself); after a quiet spell the
# first change is written at once.
GROUP_COMMIT_INTERVAL = 0.05
STOP_POLL = 2.0  # seconds between looks for a stop request in the store (`mflow stop`)
_STOP = object()


class StoreWriter:
    def __init__(self, store: StateStore, run_id: int) -> None:
        self.store = store
        self.run_id = run_id
        self.host = this_host()
        self.error: str | None = None  # set when something could not be recorded
        # Called (on the writer's thread) with who asked, when the store holds a stop request.
        self.on_stop: Callable[[str], None] | None = None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._closing = threading.Event()  # set by close(): no more waiting to group commits
        self._thread = threading.Thread(target=self._loop, name="mflow-store", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------- runner's thread

    def handle(self, event: Event) -> None:
        if isinstance(event, TaskStarted):
            self._queue.put(
                TaskRecord(
                    self.run_id,
                    event.task_id,
                    TaskState.RUNNING,
                    event.attempt,
                    event.time,
                    None,
                    None,
                    event.pid,
                    self.host,
                    event.log_path,
                    None,
                )
            )
        elif isinstance(event, TaskEnded):
            reason = event.reason
            state = event.state
            if event.retry_in is not None:
                reason = f"{reason}; retrying" if reason else "retrying"
            self._queue.put(
                TaskRecord(
                    self.run_id,
                    event.task_id,
                    state,
                    event.attempt,
                    event.started,
                    event.time,
                    event.exit_code,
                    event.pid,
                    self.host if event.started else None,
                    event.log_path,
                    reason,
                )
            )
        elif isinstance(event, RunEnded):
            self._queue.put((event.state, event.time))

    def flush(self) -> None:
        pass  # the writer thread commits on its own

    def fail_run(self, at: float) -> None:
        """The run ended without a RunEnded event (mflow itself failed): mark it FAILED."""
        self._queue.put((RunState.FAILED, at))

    def close(self) -> None:
        """Write everything queued, then stop the thread (at once: the end of a run does not
        wait out the group-commit interval)."""
        self._queue.put(_STOP)
        self._closing.set()
        self._thread.join()

    # ------------------------------------------------------------- writer thread

    def _loop(self) -> None:
        next_beat = time.monotonic() + HEARTBEAT_INTERVAL
        next_look = time.monotonic() + STOP_POLL
        last_commit = 0.0
        stopping = False
        while not stopping:
            try:
                wake = min(next_beat, next_look) if self.on_stop else next_beat
                first = self._queue.get(timeout=max(0.0, wake - time.monotonic()))
            except queue.Empty:
                first = None
            if isinstance(first, TaskRecord):
                pause = last_commit + GROUP_COMMIT_INTERVAL - time.monotonic()
                if pause > 0:
                    self._closing.wait(pause)
            batch = [] if first is None else [first]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            changes: list[TaskRecord] = []
            for item in batch:
                if item is _STOP:
                    stopping = True
                elif isinstance(item, TaskRecord):
                    changes.append(item)
                else:
                    self._write(changes)
                    changes = []
                    status, at = item  # type: ignore[misc]
                    self._call(lambda s=status, t=at: self.store.finish_run(self.run_id, s, t))
            self._write(changes)
            last_commit = time.monotonic()
            if time.monotonic() >= next_beat:
                self._call(lambda: self.store.heartbeat(self.run_id, time.time()))
                next_beat = time.monotonic() + HEARTBEAT_INTERVAL
            if self.on_stop is not None and time.monotonic() >= next_look:
                next_look = time.monotonic() + STOP_POLL
                self._look_for_stop()

    def _look_for_stop(self) -> None:
        """`mflow stop` from anywhere leaves a request in the store: pass it on once."""
        try:
            by = self.store.stop_requested(self.run_id)
        except Exception:  # a store that cannot be read now: the next look may do
            return
        if by is not None and self.on_stop is not None:
            on_stop, self.on_stop = self.on_stop, None
            on_stop(by)

    def _write(self, changes: list[TaskRecord]) -> None:
        if changes:
            self._call(lambda: self.store.record(changes))

    def _call(self, action: Callable[[], object]) -> None:
        """Run a store call, retrying a failing store for a while before giving up on it."""
        give_up = time.monotonic() + _RETRY_FOR
        delay = 0.5
        while True:
            try:
                action()
                return
            except Exception as exc:
                if self.error is not None or time.monotonic() >= give_up:
                    from mflow.secrets import mask_url

                    self.error = self.error or mask_url(f"state store write failed: {exc}")
                    return
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
