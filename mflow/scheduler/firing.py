"""What the leader does each turn (SPEC §5): every slot that came due is accounted for.

For each job: the slots since the last one handled (a new job's since it was added), then
its catch-up rule: `latest` fires the most recent and records the others SKIPPED (missed),
`all` fires every one oldest first, `none` fires only the ones on time (due at most
`MISFIRE_GRACE` ago). Before a slot fires: a paused job's is SKIPPED (paused), a job waiting
for another's first SUCCESS is SKIPPED (waiting for: A), one whose conflicting job runs is
SKIPPED (conflict: B), one at `max_active` runs is SKIPPED (max_active) — or, with `catchup:
all`, waits for the next turn. Every outcome is claimed in the store with the leader's epoch
before anything starts (at most once, fenced); a FIRED slot's run is started through
`mflow.launch` on a thread of a small pool, so a slow start does not delay other slots.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mflow.jobs import Job, job_from_record
from mflow.state.base import Fire
from mflow.states import RunState

if TYPE_CHECKING:
    from mflow.launch import Launched
    from mflow.plan import RunRequest
    from mflow.state.base import Lease, StateStore

log = logging.getLogger(__name__)

MISFIRE_GRACE = 60.0  # seconds: a slot due longer ago than this was missed
MAX_SLOTS_PER_TURN = 1000  # slots of one job looked at in one turn (the rest next turn)


class Fenced(Exception):
    """A claim was refused for the epoch: another scheduler leads now."""


@dataclass(frozen=True)
class Decision:
    slot: float
    outcome: str  # FIRED or SKIPPED
    reason: str | None = None


def decide(
    job: Job, slots: list[float], now: float, blocked: Callable[[], str | None]
) -> list[Decision]:
    """The outcome of each due slot (oldest first). `blocked()` says why the job cannot start
    now (or None); a slot that waits (catchup all, max_active) is left out: the next turn
    looks again."""
    if not slots:
        return []
    if not job.enabled:
        return [Decision(s, "SKIPPED", "paused") for s in slots]
    if job.catchup == "latest":
        chosen, missed = slots[-1:], slots[:-1]
    elif job.catchup == "none":
        chosen = [s for s in slots if now - s <= MISFIRE_GRACE]
        missed = [s for s in slots if now - s > MISFIRE_GRACE]
    else:
        chosen, missed = slots, []
    decisions = [Decision(s, "SKIPPED", "missed") for s in missed]
    for slot in chosen:
        why = blocked()
        if why is None:
            decisions.append(Decision(slot, "FIRED"))
            if job.catchup == "all":
                break  # one per turn: the next slot sees this run among the active ones
        elif why == "max_active" and job.catchup == "all":
            break  # waits
        else:
            decisions.append(Decision(slot, "SKIPPED", why))
    return decisions


class Firer:
    """Fires the due slots of every job for the leader."""

    def __init__(
        self,
        store: StateStore,
        host: str,
        request: RunRequest,
        launch: Callable[[RunRequest, bool], Launched],
        workers: int = 8,
    ) -> None:
        self.store = store
        self.host = host
        self.request = request
        self.launch = launch
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mflow-fire")
        self.lock = threading.Lock()
        self.epoch: int | None = None
        self.last: dict[str, float] = {}  # job -> last slot claimed (before or in this term)
        self.active: dict[str, int] = {}  # dag -> RUNNING runs, at this turn's start
        self.starting: dict[str, int] = {}  # job -> runs being started (not in the store yet)

    def turn(self, lease: Lease, now: float | None = None) -> float | None:
        """Handle every job once; return the next slot time among them (for the sleep)."""
        now = time.time() if now is None else now
        if lease.epoch != self.epoch:  # a new term: what it knows comes from the store
            self.epoch, self.last = lease.epoch, self.store.last_slots("scheduled")
        self.active = _active_by_dag(self.store)
        upcoming: float | None = None
        claims: list[tuple[Job, Fire]] = []
        for record in self.store.list_jobs():
            job = job_from_record(record)
            if job.schedule is None or job.stream:
                continue
            claims.extend((job, fire) for fire in self._due(job, lease, now))
            if job.enabled:
                nxt = job.schedule.next_after(now)
                upcoming = nxt if upcoming is None else min(upcoming, nxt)
        claimed = self.store.claim_fires([fire for _, fire in claims]) if claims else []
        fenced = bool(claims) and not any(claimed) and not self._still_leader(lease)
        for (job, fire), won in zip(claims, claimed, strict=True):
            if not won or fenced:  # claimed before (by us, before a restart), or not ours
                if fire.outcome == "FIRED":
                    with self.lock:
                        self.starting[job.name] -= 1
                continue
            self.last[job.name] = max(self.last.get(job.name, 0.0), fire.slot)
            if fire.outcome == "FIRED":
                self.pool.submit(self._start, job, fire)
        if fenced:
            raise Fenced(claims[0][0].name)
        return upcoming

    def _due(self, job: Job, lease: Lease, now: float) -> list[Fire]:
        """This turn's decisions for a job, as slots to claim."""
        assert job.schedule is not None
        # Known since the term began (`last_slots`), or a job without a slot yet.
        after = self.last.get(job.name, job.created_at)
        slots = job.schedule.slots(after, now, MAX_SLOTS_PER_TURN)
        fires = []
        for decision in decide(job, slots, now, lambda: self._blocked(job)):
            if decision.outcome == "FIRED":
                with self.lock:  # counted as starting from now on (max_active, conflicts)
                    self.starting[job.name] = self.starting.get(job.name, 0) + 1
            fires.append(
                Fire(
                    job.name,
                    decision.slot,
                    "scheduled",
                    decision.outcome,
                    decision.reason,
                    host=self.host,
                    epoch=lease.epoch,
                    at=time.time(),
                )
            )
        return fires

    def _still_leader(self, lease: Lease) -> bool:
        leader = self.store.leader()
        return leader is not None and leader.epoch == lease.epoch

    def _blocked(self, job: Job) -> str | None:
        for other in job.after_success_of:
            if not self.store.list_runs(dag=other, status=RunState.SUCCESS, limit=1):
                return f"waiting for: {other}"
        with self.lock:
            starting = dict(self.starting)
        for other in job.conflicts_with:
            if self.active.get(other, 0) + starting.get(other, 0):
                return f"conflict: {other}"
        if self.active.get(job.name, 0) + starting.get(job.name, 0) >= job.max_active:
            return "max_active"
        return None

    def _start(self, job: Job, fire: Fire) -> None:
        request = replace(self.request, job=job.name, allow_concurrent=job.max_active > 1)
        try:
            self._launch(job, fire, request)
        finally:
            with self.lock:
                self.starting[job.name] -= 1

    def _launch(self, job: Job, fire: Fire, request: RunRequest) -> None:
        from mflow.launch import LaunchError

        try:
            launched = self.launch(request, job.output is not None)
        except LaunchError as exc:
            log.warning("job %s slot %s: could not start: %s", job.name, fire.slot, exc)
            self.store.set_fire_run(fire, None, f"could not start: {exc}")
            return
        except Exception as exc:  # never lose a fire to a thread's exception
            log.exception("job %s slot %s: could not start", job.name, fire.slot)
            self.store.set_fire_run(fire, None, f"could not start: {exc}")
            return
        reason = "no data ready" if launched.run_id is None else None
        self.store.set_fire_run(fire, launched.run_id, reason)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _active_by_dag(store: StateStore) -> dict[str, int]:
    """RUNNING runs by DAG (a run whose owner is gone is not running): one query a turn."""
    from mflow.queries import settle_gone

    counts: dict[str, int] = {}
    for run in settle_gone(store, store.list_runs(status=RunState.RUNNING, limit=100_000)):
        if run.status is RunState.RUNNING:
            counts[run.dag] = counts.get(run.dag, 0) + 1
    return counts
