"""`mflow runjob JOB [--all] [--dataid D]` (SPEC §6): claim a partition, run the job on it,
mark its output READY or FAILED.

The claim is the store's (`StateStore.claim_partition`: the smallest dataid whose inputs are
all READY and whose output is absent or RESUBMIT, atomically, on any number of hosts). The
job's task then runs as an ordinary run of the job (`mflow.run.execute`, in this process)
with `MFLOW_DATAID` and, for each of its datasets, `<DATASET>_<FIELD>` with `${dataid}`
filled in. While it runs, the claim's heartbeat is kept: a claimer that dies leaves a claim
that is made claimable again (no heartbeat for 60 s, or its pid gone on this host). `--all`
goes on until nothing is ready: the catch-up after an outage, oldest dataid first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mflow.errors import ConfigError

if TYPE_CHECKING:
    from mflow.events import Listener
    from mflow.plan import RunRequest
    from mflow.run import RunResult
    from mflow.state.base import Partition, StateStore

HEARTBEAT = 10.0  # seconds between a claim's heartbeats


@dataclass(frozen=True)
class Produced:
    partition: Partition  # as it ended: READY or FAILED
    result: RunResult


def runjob(
    store: StateStore,
    request: RunRequest,
    name: str,
    *,
    every: bool = False,
    dataid: str | None = None,
    view: Callable[[], Listener | None] = lambda: None,
    on_claimed: Callable[[Partition, int], None] | None = None,
) -> list[Produced]:
    """Claim and produce partitions of job `name` (one, or with `every` all that are ready);
    [] when nothing is ready. `on_claimed(partition, run_id)` is told of each run started."""
    from mflow.jobs import job_from_record, known_job
    from mflow.partitions import check_dataid, variables
    from mflow.state.base import Claim, this_host

    job = job_from_record(known_job(store, name))
    if job.output is None:
        raise ConfigError(
            f"job '{name}' is not partition-aware: it has no inputs and output",
            json_path="",
            hint=f"mflow jobs trigger {name} runs it",
        )
    if dataid is not None:
        check_dataid(dataid)
    datasets = {d.name: d for d in store.datasets()}
    missing = [d for d in (*job.inputs, job.output) if d not in datasets]
    if missing:
        raise ConfigError(
            f"job '{name}' names datasets that do not exist: {', '.join(missing)}",
            json_path="",
            hint="mflow datasets add NAME JSON",
        )
    mine = {d: datasets[d] for d in (*job.inputs, job.output)}
    claim = Claim(name, this_host(), os.getpid())
    produced: list[Produced] = []
    while True:
        partition = store.claim_partition(claim, job.inputs, job.output, dataid)
        if partition is None:
            return produced
        env = tuple(variables(mine, partition.dataid).items())
        produced.append(_produce(store, request, name, claim, partition, env, view(), on_claimed))
        if not every or dataid is not None:
            return produced


def _produce(
    store: StateStore,
    request: RunRequest,
    name: str,
    claim: object,
    partition: Partition,
    env: tuple[tuple[str, str], ...],
    view: Listener | None,
    on_claimed: Callable[[Partition, int], None] | None,
) -> Produced:
    from mflow.run import execute
    from mflow.state.base import Partition
    from mflow.states import PartitionStatus, RunState

    stop = threading.Event()
    beat = threading.Thread(
        target=_keep_alive, args=(store, partition, claim, stop), name="mflow-claim", daemon=True
    )
    beat.start()
    run_id: list[int] = []

    def taken(run: object) -> None:
        run_id.append(run.id)  # type: ignore[attr-defined]
        if on_claimed is not None:
            on_claimed(partition, run.id)  # type: ignore[attr-defined]

    status = PartitionStatus.FAILED
    result = None
    try:
        result = execute(replace(request, job=name, env=env, allow_concurrent=True), view, taken)
        if result.state is RunState.SUCCESS:
            status = PartitionStatus.READY
    finally:
        stop.set()
        beat.join()
        ended = Partition(
            partition.dataset, partition.dataid, status, name,
            run_id[0] if run_id else None, partition.host, partition.pid,
        )  # fmt: skip
        store.set_partition(ended)
    assert result is not None
    return Produced(ended, result)


def _keep_alive(
    store: StateStore, partition: Partition, claim: object, stop: threading.Event
) -> None:
    while not stop.wait(HEARTBEAT):
        try:
            store.heartbeat_partition(partition.dataset, partition.dataid, claim)  # type: ignore[arg-type]
        except Exception:  # a heartbeat that fails now may succeed next time
            pass
