"""What the leader decides for the slots that came due (mflow.scheduler.firing.decide): the
catch-up rules, paused jobs, and what blocks a start."""

from __future__ import annotations

from mflow.jobs import job_from_record
from mflow.scheduler.firing import MISFIRE_GRACE, Decision, decide
from mflow.state.base import JobRecord

NOW = 1_000_000.0


def job(**fields: object) -> object:
    return job_from_record(
        JobRecord("j", {"type": "bash", "command": "true", "frequency": 60, **fields})
    )


def late(*ages: float) -> list[float]:
    return [NOW - age for age in ages]


def test_latest_fires_the_most_recent_and_records_the_others_missed() -> None:
    slots = late(300, 240, 180)
    assert decide(job(), slots, NOW, lambda: None) == [  # type: ignore[arg-type]
        Decision(slots[0], "SKIPPED", "missed"),
        Decision(slots[1], "SKIPPED", "missed"),
        Decision(slots[2], "FIRED"),
    ]


def test_all_fires_the_oldest_first_one_per_turn() -> None:
    slots = late(300, 240, 180)
    assert decide(job(catchup="all"), slots, NOW, lambda: None) == [  # type: ignore[arg-type]
        Decision(slots[0], "FIRED")
    ]


def test_none_fires_only_what_is_on_time() -> None:
    slots = late(MISFIRE_GRACE + 60, MISFIRE_GRACE + 1, 1)
    assert decide(job(catchup="none"), slots, NOW, lambda: None) == [  # type: ignore[arg-type]
        Decision(slots[0], "SKIPPED", "missed"),
        Decision(slots[1], "SKIPPED", "missed"),
        Decision(slots[2], "FIRED"),
    ]


def test_a_paused_jobs_slots_are_skipped_as_paused() -> None:
    record = JobRecord("j", {"type": "bash", "command": "true", "frequency": 60}, enabled=False)
    slots = late(120, 60)
    assert decide(job_from_record(record), slots, NOW, lambda: None) == [
        Decision(s, "SKIPPED", "paused") for s in slots
    ]


def test_what_blocks_a_start_is_the_reason_it_was_skipped() -> None:
    for why in ("waiting for: initial_sync", "conflict: full_load", "max_active"):
        assert decide(job(), late(1), NOW, lambda why=why: why) == [  # type: ignore[arg-type]
            Decision(NOW - 1, "SKIPPED", why)
        ]


def test_with_catchup_all_a_slot_beyond_max_active_waits_unrecorded() -> None:
    assert decide(job(catchup="all"), late(120, 60), NOW, lambda: "max_active") == []  # type: ignore[arg-type]
    skipped = decide(job(catchup="all"), late(1), NOW, lambda: "conflict: b")  # type: ignore[arg-type]
    assert skipped == [Decision(NOW - 1, "SKIPPED", "conflict: b")]


def test_nothing_due_decides_nothing() -> None:
    assert decide(job(), [], NOW, lambda: None) == []  # type: ignore[arg-type]
