"""The master log and the task logs.

`<log_directory>/mflow.log` is appended to by every run (child runs included), one line per
event: ISO-8601 time, level, run id, message. `<log_directory>/master_<run>_task_<task>.log`
receives a task's stdout and stderr straight from the process; each attempt starts with a
header line written here. No colour codes go to either.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import lru_cache
from pathlib import Path

from mflow.events import (
    Event,
    OwnerGone,
    RunEnded,
    RunNotice,
    RunStarted,
    TaskEnded,
    TaskStarted,
)
from mflow.files import open_private
from mflow.states import STATE_TEXT, TaskState

MASTER_LOG = "mflow.log"
# The master log's level for a task's end; any other end is a WARNING.
_LEVEL = {TaskState.SUCCESS: "INFO", TaskState.FAILED: "ERROR"}


STORE_MARKER = ".mflow-store"


def task_log_path(log_dir: Path, run_id: int, task_id: str, tag: str | None = None) -> Path:
    """`master_<run>_task_<task>.log` (the seed's name), or with a store's tag before the run
    id, `master_<tag>-<run>_task_<task>.log`, in a directory another store's runs log to."""
    run = f"{tag}-{run_id}" if tag else str(run_id)
    return log_dir / f"master_{run}_task_{task_id}.log"


def store_tag(log_dir: Path, store_id: str) -> str | None:
    """None when the log directory belongs to this store, else the tag its task logs carry.

    Run ids are only unique within a store: two stores' run 5 logging to one directory must
    not share task logs. The first store to log in a directory claims it (a `.mflow-store`
    file holding its id) and keeps the seed's names there; any other store's runs put the
    first 8 characters of their store's id in their task logs' names."""
    marker = log_dir / STORE_MARKER
    try:
        fd = open_private(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        try:
            owner = marker.read_text(encoding="utf-8").strip()
        except OSError:
            owner = ""
        return None if owner == store_id else store_id[:8]
    try:
        os.write(fd, f"{store_id}\n".encode())
    finally:
        os.close(fd)
    return None


@lru_cache(maxsize=1)
def _second(whole: int) -> tuple[str, str]:
    """A whole second's local time and UTC offset: formatted once a second, not per line."""
    local = time.localtime(whole)
    offset = local.tm_gmtoff
    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return time.strftime("%Y-%m-%dT%H:%M:%S", local), f"{sign}{hours:02d}:{minutes:02d}"


def iso(t: float) -> str:
    """Local time with its UTC offset, to the millisecond (2026-11-23T19:30:00.123+01:00)."""
    whole = int(t)
    stamp, zone = _second(whole)
    return f"{stamp}.{int((t - whole) * 1000):03d}{zone}"


def attempt_header(
    run_id: int, task_id: str, attempt: int, attempts: int, command: str, t: float, earlier: int = 0
) -> str:
    """The line that starts an attempt in the task log: `attempt 2/3`, or after a resume that
    found 3 attempts made, `attempt 4 (resumed: try 1/3)`."""
    which = (
        f"{attempt} (resumed: try {attempt - earlier}/{attempts})"
        if earlier
        else f"{attempt}/{attempts}"
    )
    return f"===== mflow {iso(t)} run {run_id} task {task_id} attempt {which}: {command}\n"


def open_task_log(path: Path) -> int:
    """An append-only descriptor on the task log, for the process's stdout and stderr: 0600,
    and never through a symlink (mflow.files)."""
    return open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f}s"
    minutes, secs = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def count(n: int, noun: str) -> str:
    """`1 task`, `2 tasks`: a number and its noun, plural when it is not one."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# How a state reads in text for people; JSON and the store keep the names.
_LABEL = {"NONE": "not started"}


def state_label(state: str) -> str:
    """A state's name as people read it: NONE is "not started"."""
    return _LABEL.get(state, state)


def counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state_label(s)}" for s, n in counts.items() if n) or "no tasks"


def format_event(event: Event) -> tuple[str, str] | None:
    """(level, message) for the master log."""
    if isinstance(event, TaskStarted):
        pid = f", pid {event.pid}" if event.pid else ""
        return "INFO", f"task {event.task_id} started (attempt {event.attempt}{pid})"
    if isinstance(event, TaskEnded):
        parts = [f"attempt {event.attempt}"]
        if event.exit_code is not None:
            parts.append(f"exit code {event.exit_code}")
        if event.duration is not None:
            parts.append(seconds(event.duration))
        if event.reason:
            parts.append(event.reason)
        if event.log_path:
            parts.append(f"log {event.log_path}")
        text = f"task {event.task_id} {STATE_TEXT[event.state]} ({', '.join(parts)})"
        if event.retry_in is not None:
            return "WARNING", f"{text}; retry in {seconds(event.retry_in)}"
        return _LEVEL.get(event.state, "WARNING"), text
    if isinstance(event, RunStarted):
        what = "run resumed" if event.resumed else "run started"
        parent = (
            f", parent run {event.parent_run_id} task {event.parent_task_id}"
            if event.parent_run_id is not None
            else ""
        )
        return "INFO", (
            f"{what}: dag {event.dag}, taskfile {event.taskfile}, "
            f"config {event.config or '(defaults)'}, datasources {event.datasources or '(none)'}, "
            f"state {event.state_url}, log directory {event.log_directory}, "
            f"{count(event.tasks, 'task')}, concurrency {event.concurrency}{parent}"
        )
    if isinstance(event, RunEnded):
        level = "INFO" if event.exit_code == 0 else "ERROR"
        took = seconds(event.time - event.started)
        return level, f"run ended {event.state}: {counts_text(event.counts)} in {took}"
    if isinstance(event, RunNotice):
        return event.level, event.message
    if isinstance(event, OwnerGone):
        return "WARNING", owner_gone_text(event)
    return None


def owner_gone_text(event: OwnerGone) -> str:
    what = (
        f"taken over by pid {event.resumed_by}" if event.resumed_by is not None else "marked FAILED"
    )
    return (
        f"run {event.run_id}: owner gone (pid {event.pid} on {event.host}, last heartbeat "
        f"{iso(event.heartbeat_at)}); {what}"
    )


# Libraries whose log records go to the master log during a run (nowhere else): mflow's own
# (a stale run released by the store...) and kazoo's (ZooKeeper connection trouble).
LIBRARY_LOGGERS = ("mflow", "kazoo")


class MasterLog:
    """Appends one line per event to `<log_directory>/mflow.log`, and the log records of the
    libraries mflow uses (`LIBRARY_LOGGERS`, at DEBUG and above) while the run lasts."""

    def __init__(self, log_dir: Path, tag: str | None = None) -> None:
        self.path = log_dir / MASTER_LOG
        self.tag = f"{tag}-" if tag else ""  # another store's runs (see store_tag)
        # Buffered, and flushed each time the runner goes to sleep (`flush`): `tail -f` still
        # sees every event as it happens, without a write() per line on the dispatch path.
        fd = open_private(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._file = open(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._handler = _LibraryRecords(self)
        for name in LIBRARY_LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(self._handler)
            logger.setLevel(logging.DEBUG)

    def write(self, t: float, level: str, run_id: int | None, message: str) -> None:
        run = f"run={self.tag}{run_id}" if run_id is not None else "run=-"
        line = f"{iso(t)} {level:<7} {run} {message}\n"
        with self._lock:  # library records come from other threads
            self._file.write(line)

    def handle(self, event: Event) -> None:
        formatted = format_event(event)
        if formatted is not None:
            self.write(event.time, formatted[0], event.run_id, formatted[1])

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).removeHandler(self._handler)
        self._file.close()


class _LibraryRecords(logging.Handler):
    """A library's log records as master-log lines (any thread: one write() per line)."""

    def __init__(self, master: MasterLog) -> None:
        super().__init__(logging.DEBUG)
        self.master = master

    def emit(self, record: logging.LogRecord) -> None:
        from mflow.secrets import mask_url

        try:
            text = mask_url(" ".join(record.getMessage().split()))
            level = record.levelname if record.levelno >= logging.WARNING else "DEBUG"
            self.master.write(record.created, level, None, f"{record.name}: {text}")
        except Exception:  # a log record must never break a run
            self.handleError(record)
