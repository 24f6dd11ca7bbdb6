"""`mflow scheduler`: one member of the schedulers of a store (SPEC §5).

Each member registers (`<hostname>-<pid>` unless named) and heartbeats; the one that leads
(mflow.scheduler.leadership) fires the due slots of every job (mflow.scheduler.firing) and
keeps the gsql_stream jobs running (mflow.scheduler.streams); the others stand by. Every run
is its own `mflow` process in its own session (mflow.launch): a scheduler's death does not
kill running jobs. SIGTERM or SIGINT: stop firing, stop the streams, give up leadership at
once, leave, exit 0. Lines go to stdout (one per event: leading, standing by, a slot that
could not start...) and to `<log_directory>/scheduler.log`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mflow.plan import RunRequest
    from mflow.state.base import StateStore

log = logging.getLogger("mflow.scheduler")

HEARTBEAT = 5.0  # seconds between a member's heartbeats
TURN = 1.0  # seconds between turns at most (a due slot wakes the leader earlier)


@dataclass(frozen=True)
class SchedulerOptions:
    request: RunRequest  # the config, datasources and store every run gets
    name: str | None = None


def run_scheduler(options: SchedulerOptions, store: StateStore) -> None:
    """Run until SIGTERM/SIGINT; raises only for a store that cannot be used at start."""
    from mflow.launch import launch
    from mflow.scheduler.firing import Fenced, Firer
    from mflow.scheduler.leadership import leadership
    from mflow.scheduler.streams import Streams
    from mflow.state.base import Member, this_host

    hostname = this_host()
    name = options.name or f"{hostname}-{os.getpid()}"
    stop = threading.Event()
    _on_signals(stop)
    since = time.time()
    store.join(Member(name, hostname, os.getpid(), since, since))
    elected = leadership(store, name, hostname)
    firer = Firer(
        store, hostname, options.request, lambda request, parts: launch(request, partitions=parts)
    )
    streams = Streams(store, options.request, lambda request, env: launch(request, env=env))
    log.info("scheduler %s started (store %s)", name, store.display_url)
    leading = None
    next_beat = time.monotonic() + HEARTBEAT
    try:
        while not stop.is_set():
            if time.monotonic() >= next_beat:
                store.join(Member(name, hostname, os.getpid(), since, time.time()))
                next_beat = time.monotonic() + HEARTBEAT
            lease = elected.current()
            if (lease is None) != (leading is None) or (
                lease and leading and lease.epoch != leading.epoch
            ):
                if lease is None:
                    streams.stop_all()
                    log.warning("scheduler %s is no longer the leader: standing by", name)
                else:
                    log.info("scheduler %s leads (epoch %s)", name, lease.epoch)
            leading = lease
            sleep = TURN
            if lease is not None:
                try:
                    upcoming = firer.turn(lease)
                    streams.turn()
                except Fenced as exc:
                    log.warning("scheduler %s was fenced out (job %s): standing by", name, exc)
                    streams.stop_all()
                    leading = None
                    continue
                if upcoming is not None:
                    sleep = min(TURN, max(0.0, upcoming - time.time()))
            elected.wait(sleep, stop)
    finally:
        streams.stop_all()
        elected.resign()
        firer.close()
        try:
            store.leave(name)
        except Exception:  # leaving is a courtesy: the heartbeat ages out anyway
            pass
        log.info("scheduler %s stopped", name)


def _on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: object) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


def log_to(stream_lines: bool, log_file: str | None) -> None:
    """Where the scheduler's lines go: stdout (plain), and its log file (0600)."""
    logger = logging.getLogger("mflow")
    logger.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)-7s %(message)s")
    if stream_lines:
        handler = logging.StreamHandler()
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    if log_file:
        from mflow.files import open_private

        fd = open_private(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        file_handler = logging.StreamHandler(open(fd, "a", buffering=1, encoding="utf-8"))
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
