"""gsql_stream jobs (SPEC §5): the leader keeps each one running as a run of its own, and
starts it again when it stops, after 1 s, doubling up to 5 min (back to 1 s once a run lasted
longer than the backoff). A scheduler that stops leading stops its streams first.

A stream's run is `mflow run --job NAME` with MFLOW_STREAM=1 in its environment: the
gsql_stream task then runs its loading job through REST++ (as gsql_batch does) for as long
as TigerGraph keeps the request open.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mflow.jobs import job_from_record

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from mflow.launch import Launched
    from mflow.plan import RunRequest
    from mflow.state.base import StateStore

log = logging.getLogger(__name__)

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 300.0
STREAM_ENV = "MFLOW_STREAM"


@dataclass
class _Stream:
    launched: Launched | None = None
    started: float = 0.0  # monotonic
    backoff: float = FIRST_BACKOFF
    next_start: float = 0.0  # monotonic


class Streams:
    def __init__(
        self,
        store: StateStore,
        request: RunRequest,
        launch: Callable[[RunRequest, Mapping[str, str]], Launched],
    ) -> None:
        self.store = store
        self.request = request
        self.launch = launch
        self.streams: dict[str, _Stream] = {}

    def turn(self) -> None:
        """Start what should run and does not; forget streams whose job is gone or paused."""
        now = time.monotonic()
        wanted = {
            job.name
            for job in map(job_from_record, self.store.list_jobs())
            if job.stream and job.enabled
        }
        for name in list(self.streams):
            if name not in wanted:
                self._stop(name)
        for name in sorted(wanted):
            stream = self.streams.setdefault(name, _Stream())
            running = stream.launched is not None and stream.launched.process is not None
            if running and stream.launched.process.poll() is None:  # type: ignore[union-attr]
                continue
            if running:  # it stopped: again after the backoff
                lasted = now - stream.started
                stream.backoff = (
                    FIRST_BACKOFF
                    if lasted > stream.backoff
                    else min(stream.backoff * 2, MAX_BACKOFF)
                )
                stream.next_start = now + stream.backoff
                log.warning(
                    "stream %s stopped after %.1f s: again in %.0f s", name, lasted, stream.backoff
                )
                stream.launched = None
            if now >= stream.next_start:
                self._start(name, stream, now)

    def _start(self, name: str, stream: _Stream, now: float) -> None:
        from mflow.launch import LaunchError

        env = {**os.environ, STREAM_ENV: "1"}
        try:
            stream.launched = self.launch(replace(self.request, job=name), env)
            stream.started = now
            log.info("stream %s started: run %s", name, stream.launched.run_id)
        except LaunchError as exc:
            stream.backoff = min(stream.backoff * 2, MAX_BACKOFF)
            stream.next_start = now + stream.backoff
            log.warning(
                "stream %s could not start (%s): again in %.0f s", name, exc, stream.backoff
            )

    def _stop(self, name: str) -> None:
        stream = self.streams.pop(name)
        process = stream.launched.process if stream.launched else None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the run cancels its task and ends
            try:
                process.wait(timeout=30)
            except Exception:
                os.killpg(process.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        """Before leadership is given up (or lost): no stream may run twice."""
        for name in list(self.streams):
            self._stop(name)
