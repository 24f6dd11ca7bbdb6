"""What a run prints: a live view on a terminal, plain lines in a pipe, JSON events, or quiet.

Every view is a listener of run events and ends with the same summary (JSON mode prints the
`RunEnded` event instead). Output that cannot be written (stdout closed) is dropped: the run
goes on and its logs and store are the record.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from mflow.events import (
    Event,
    OwnerGone,
    RunEnded,
    RunNotice,
    RunStarted,
    TaskEnded,
    TaskStarted,
    event_dict,
)
from mflow.files import open_log_for_reading
from mflow.logs import count, counts_text, owner_gone_text, seconds, state_label
from mflow.states import TaskState


def resume_command(resume: Sequence[str] | None, event: RunEnded) -> str | None:
    """The command that continues the run, when it did not succeed."""
    if not resume or event.exit_code == 0:
        return None
    return shlex.join([*resume, str(event.run_id)])


def summary_lines(event: RunEnded, resume: Sequence[str] | None = None) -> list[str]:
    took = seconds(event.time - event.started)
    lines = [f"run {event.run_id} {event.state} in {took}: {counts_text(event.counts)}"]
    width = max((len(tid) for tid, _ in event.failed), default=0)
    for tid, log_path in event.failed:
        lines.append(f"  failed: {tid:<{width}}  log: {log_path}")
        lines.extend(f"    | {line}" for line in log_tail(log_path))
    command = resume_command(resume, event)
    if command:
        lines.append(f"resume with: {command}")
    return lines


# The colour of each state on a terminal (by name and by label).
STYLE = {
    "SUCCESS": "green",
    "FAILED": "bold red",
    "UPSTREAM_FAILED": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "NONE": "dim",
    "not started": "dim",
    "READY": "green",
    "RESUBMIT": "yellow",
}


TAIL_LINES = 10
_TAIL_BYTES = 16384


def log_tail(path: str | None, lines: int = TAIL_LINES) -> list[str]:
    """The last lines a failed task wrote to its log (mflow's attempt headers left out),
    printable, each cut to 200 characters; none when the log cannot be read."""
    if not path:
        return []
    try:
        with open_log_for_reading(path) as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _TAIL_BYTES))
            data = f.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    found = text.splitlines()
    if size > _TAIL_BYTES and found:
        found = found[1:]  # the first line read may be the end of a longer one
    said = [line for line in found if line.strip() and not line.startswith("===== mflow ")]
    tail = said[-lines:]
    return ["".join(c if c.isprintable() else "?" for c in line)[:200] for line in tail]


class _Output:
    def __init__(self, stream: IO[str] | None = None, resume: Sequence[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.broken = self.stream is None  # started with stdout closed (`mflow >&-`)
        self.resume = resume  # the command that continues a run, without its id

    def line(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.stream.write(text + "\n")
        except (OSError, ValueError, AttributeError):
            self.broken = True

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except (OSError, ValueError, AttributeError):
                self.broken = True

    def close(self) -> None:
        self.flush()


class QuietConsole(_Output):
    """Only the final summary."""

    def handle(self, event: Event) -> None:
        if isinstance(event, RunEnded):
            for text in summary_lines(event, self.resume):
                self.line(text)


class JsonConsole(_Output):
    """One JSON object per event on stdout (`--json`)."""

    def handle(self, event: Event) -> None:
        data = event_dict(event)
        if isinstance(event, RunEnded):
            data["resume_command"] = resume_command(self.resume, event)
        self.line(json.dumps(data, separators=(",", ":")))


def plain_event(event: Event) -> str | None:
    """One line for an event, or None for events not worth a line."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
    if isinstance(event, TaskStarted):
        pid = f", pid {event.pid}" if event.pid else ""
        return f"{stamp} START    {event.task_id} (attempt {event.attempt}{pid})"
    if isinstance(event, TaskEnded):
        if event.retry_in is not None:
            return (
                f"{stamp} RETRY    {event.task_id} attempt {event.attempt} failed "
                f"({event.reason}); next in {seconds(event.retry_in)}"
            )
        detail = seconds(event.duration) if event.duration is not None else ""
        if event.state is not TaskState.SUCCESS and event.reason:
            detail = f"{detail} {event.reason}".strip()
        if event.state in (TaskState.FAILED, TaskState.CANCELLED) and event.log_path:
            detail += f" (log {event.log_path})"
        return f"{stamp} {event.state.value:<8} {event.task_id} {detail}".rstrip()
    if isinstance(event, RunStarted):
        what = "resumed" if event.resumed else "started"
        return (
            f"{stamp} run {event.run_id} {what}: {event.dag}, {count(event.tasks, 'task')}, "
            f"concurrency {event.concurrency}, logs in {event.log_directory}"
        )
    if isinstance(event, RunNotice):
        return f"{stamp} {event.level:<8} {event.message}"
    if isinstance(event, OwnerGone):
        return f"{stamp} {'WARNING':<8} {owner_gone_text(event)}"
    return None


class PlainConsole(_Output):
    """Plain one-line events, no colour codes: for pipes, files and cron mail."""

    def handle(self, event: Event) -> None:
        text = plain_event(event)
        if text is not None:
            self.line(text)
        if isinstance(event, RunEnded):
            for text in summary_lines(event, self.resume):
                self.line(text)


class LiveConsole:
    """A rich live view: counts by state, running tasks with their elapsed time, overall time.

    Failures and notices are printed above the view as they happen."""

    def __init__(self, resume: Sequence[str] | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.resume = resume
        self.console = Console(highlight=False)
        self.lock = threading.Lock()
        self.running: dict[str, tuple[float, int]] = {}  # task -> (started, attempt)
        self.counts: dict[str, int] = {}
        self.total = 0
        self.title = ""
        self.started = time.time()
        self.live = Live(
            console=self.console, get_renderable=self._render, refresh_per_second=4, transient=True
        )
        self.live_started = False

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        with self.lock:
            running = sorted(self.running.items(), key=lambda kv: kv[1][0])
            counts = dict(self.counts)
        now = time.time()
        done = sum(n for s, n in counts.items() if s not in ("RUNNING", "NONE"))
        head = Text.assemble(
            (self.title, "bold"),
            f"  {done}/{self.total} done  ",
            (seconds(now - self.started), "dim"),
        )
        tally = Text("  ").join(
            Text(f"{n} {state_label(s)}", style=STYLE.get(s, "")) for s, n in counts.items() if n
        )
        table = Table(box=None, show_header=bool(running), pad_edge=False)
        table.add_column("running", style="cyan")
        table.add_column("attempt", justify="right")
        table.add_column("elapsed", justify="right")
        for tid, (since, attempt) in running[:20]:
            table.add_row(tid, str(attempt), seconds(now - since))
        if len(running) > 20:
            table.add_row(f"… {len(running) - 20} more", "", "")
        return Group(head, tally, table)

    def handle(self, event: Event) -> None:
        with self.lock:
            self._update(event)
        if isinstance(event, TaskEnded) and event.state is not TaskState.SUCCESS:
            style = STYLE.get(event.state.value, "")
            text = plain_event(event)
            if text:
                self.console.print(text, style=style, markup=False)
        elif isinstance(event, RunNotice | OwnerGone):
            self.console.print(plain_event(event), markup=False)
        elif isinstance(event, RunStarted):
            self.live.start()
            self.live_started = True
        elif isinstance(event, RunEnded):
            self.close()
            style = "green" if event.exit_code == 0 else "bold red"
            for i, text in enumerate(summary_lines(event, self.resume)):
                self.console.print(text, style=style if i == 0 else None, markup=False)

    def _update(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.title = f"mflow {event.dag} run {event.run_id}"
            self.total = event.tasks
            self.started = event.time
            self.counts = {"SUCCESS": event.done, "NONE": event.tasks - event.done}
        elif isinstance(event, TaskStarted):
            self.running[event.task_id] = (event.time, event.attempt)
            self._move(None, "RUNNING", event.task_id)
        elif isinstance(event, TaskEnded):
            was_running = self.running.pop(event.task_id, None) is not None
            new = "NONE" if event.retry_in is not None else event.state.value
            self._move("RUNNING" if was_running else "NONE", new, event.task_id)

    def _move(self, old: str | None, new: str, task_id: str) -> None:
        old = old or "NONE"
        self.counts[old] = max(0, self.counts.get(old, 0) - 1)
        self.counts[new] = self.counts.get(new, 0) + 1

    def flush(self) -> None:
        pass  # the live view redraws itself

    def close(self) -> None:
        if self.live_started:
            self.live.stop()
            self.live_started = False


def make_console(*, quiet: bool, json_output: bool, resume: Sequence[str] | None = None) -> Any:
    """The view that fits: --json, --quiet, a terminal, or anything else. `resume` is the
    command that continues a run, without the run id; the summary shows it after a failure."""
    if json_output:
        return JsonConsole(resume=resume)
    if quiet:
        return QuietConsole(resume=resume)
    try:
        tty = sys.stdout.isatty()
    except (AttributeError, ValueError):
        tty = False
    return LiveConsole(resume) if tty else PlainConsole(resume=resume)
