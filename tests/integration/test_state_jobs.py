"""The state-store contract, jobs side (SPEC §5), on every backend: jobs, slots claimed at most
once, fencing by epoch, the leader's lease, the members."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from mflow.state.base import Fire, JobRecord, Member, StateStore, this_host

DOC = {"type": "bash", "command": "true", "frequency": "1h"}


def test_jobs_are_created_once_updated_listed_paused_and_deleted(store: StateStore) -> None:
    assert store.put_job(JobRecord("nightly", DOC, "/srv"), create=True)
    assert not store.put_job(JobRecord("nightly", DOC), create=True)  # exists: use update
    assert not store.put_job(JobRecord("ghost", DOC), create=False)  # missing: use add
    assert store.put_job(JobRecord("nightly", {**DOC, "frequency": "2h"}, "/srv"), create=False)
    store.put_job(JobRecord("alpha", DOC), create=True)
    job = store.get_job("nightly")
    assert job is not None and job.document["frequency"] == "2h" and job.base_dir == "/srv"
    assert job.enabled and job.created_at > 0
    assert [j.name for j in store.list_jobs()] == ["alpha", "nightly"]
    assert store.set_job_enabled("nightly", False)
    assert not store.get_job("nightly").enabled  # type: ignore[union-attr]
    assert not store.set_job_enabled("ghost", True)
    assert store.delete_job("alpha") and not store.delete_job("alpha")
    assert store.get_job("alpha") is None


def test_a_slot_is_claimed_at_most_once(store: StateStore) -> None:
    slot = time.time() // 60 * 60
    fire = Fire("j", slot, host=this_host())
    assert store.claim_fire(fire)
    assert not store.claim_fire(fire)
    assert store.claim_fire(Fire("j", slot, kind="manual"))  # a slot of its own
    assert store.claim_fire(Fire("j", slot - 60, outcome="SKIPPED", reason="missed"))
    store.set_fire_run(fire, 42)
    found = store.fires("j")
    assert [(f.kind, f.slot, f.outcome, f.run_id) for f in found] == [
        ("scheduled", slot, "FIRED", 42),
        ("manual", slot, "FIRED", None),
        ("scheduled", slot - 60, "SKIPPED", None),
    ] or [(f.kind, f.slot, f.outcome, f.run_id) for f in found] == [
        ("manual", slot, "FIRED", None),
        ("scheduled", slot, "FIRED", 42),
        ("scheduled", slot - 60, "SKIPPED", None),
    ]
    assert [f.slot for f in store.fires("j", kind="scheduled", limit=1)] == [slot]
    assert found[-1].reason == "missed"


def test_each_jobs_newest_scheduled_slot_in_one_request(store: StateStore) -> None:
    for name in ("a", "b", "never"):
        store.put_job(JobRecord(name, DOC), create=True)
    slot = time.time() // 60 * 60
    assert store.last_slots() == {}
    store.claim_fire(Fire("a", slot - 120))
    store.claim_fire(Fire("a", slot, outcome="SKIPPED", reason="max_active"))
    store.claim_fire(Fire("a", slot + 60, kind="manual"))
    store.claim_fire(Fire("b", slot - 60.5))
    assert store.last_slots() == {"a": slot, "b": slot - 60.5}
    assert store.last_slots("manual") == {"a": slot + 60}


def test_a_claim_with_an_old_epoch_is_fenced_out_after_a_takeover(
    store: StateStore, open_at: Callable[[], StateStore]
) -> None:
    first = store.acquire_lease("a", "host-a", ttl=0.2)
    assert first is not None
    assert store.claim_fire(Fire("j", 1000.0, epoch=first.epoch))
    other = open_at()
    assert other.acquire_lease("b", "host-b", ttl=30) is None or other.leader() is None
    time.sleep(0.3)
    if other.leader() is not None and other.leader().holder == "a":  # type: ignore[union-attr]
        # ZooKeeper: leadership comes from the election; the old leader's node goes first.
        store.release_lease(first)
    second = other.acquire_lease("b", "host-b", ttl=30)
    assert second is not None and second.epoch > first.epoch
    # The old leader wakes up: it can fire nothing, and knows it.
    assert not store.claim_fire(Fire("j", 2000.0, epoch=first.epoch))
    assert not store.renew_lease(first, ttl=30)
    assert other.claim_fire(Fire("j", 2000.0, epoch=second.epoch))
    leader = store.leader()
    assert leader is not None and (leader.holder, leader.epoch) == ("b", second.epoch)


def test_the_lease_is_renewed_by_its_holder_and_released(store: StateStore) -> None:
    held = store.acquire_lease("a", "host-a", ttl=30)
    assert held is not None
    again = store.acquire_lease("a", "host-a", ttl=30)
    assert again is not None and again.epoch == held.epoch  # renewed, not a takeover
    assert store.renew_lease(held, ttl=30)
    store.release_lease(held)
    assert store.leader() is None


def test_members_join_beat_and_leave(store: StateStore) -> None:
    now = time.time()
    store.join(Member("s1", "host-1", 11, now, now))
    store.join(Member("s2", "host-2", 22, now, now))
    store.join(Member("s1", "host-1", 11, now, now + 1))
    found = {m.name: m for m in store.members()}
    assert set(found) == {"s1", "s2"} and found["s1"].pid == 11
    store.leave("s1")
    assert [m.name for m in store.members()] == ["s2"]


CLAIMER = """
import sys
from mflow.state import StoreLocation, open_store
from mflow.state.base import Fire
store = open_store(StoreLocation(sys.argv[1]))
won = sum(store.claim_fire(Fire("race", float(s))) for s in range(40))
store.close()
print(won)
"""


def test_concurrent_claimers_in_many_processes_claim_each_slot_once(
    store: StateStore, store_url: str
) -> None:
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, store_url],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        for _ in range(5)
    ]
    won = sum(int(c.communicate(timeout=120)[0]) for c in claimers)
    assert won == 40
    assert len(store.fires("race", limit=100)) == 40
