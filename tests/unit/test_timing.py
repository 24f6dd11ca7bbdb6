"""When slots are (mflow.scheduler.timing), on a controllable clock: frequencies aligned to a
start, cron in a time zone, the DST rules of SPEC §5, 6-field crons, month ends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mflow.scheduler.timing import Schedule, check_cron, check_timezone, parse_frequency


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def slots(schedule: Schedule, after: str, until: str) -> list[str]:
    """The slots in (after, until] as UTC ISO times."""
    found = schedule.slots(at(after), at(until), 1000)
    return [datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for s in found]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(60, 60), ("90", 90), ("5m", 300), ("1h", 3600), ("1d", 86400), (1.5, 1.5)],
)
def test_frequencies(value: object, seconds: float) -> None:
    assert parse_frequency(value) == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -5, "0s", "1w", "h", "", True, float("inf")])
def test_bad_frequencies(value: object) -> None:
    with pytest.raises(ValueError):
        parse_frequency(value)  # type: ignore[arg-type]


def test_a_frequency_fires_on_the_hour_utc_by_default() -> None:
    hourly = Schedule(frequency=3600)
    assert slots(hourly, "2026-01-01T10:20:00+00:00", "2026-01-01T13:00:00+00:00") == [
        "2026-01-01T11:00:00Z",
        "2026-01-01T12:00:00Z",
        "2026-01-01T13:00:00Z",
    ]


def test_a_frequency_is_aligned_to_its_start() -> None:
    every_90 = Schedule(frequency=90 * 60, start=at("2026-01-01T00:10:00+00:00"))
    assert slots(every_90, "2025-12-31T00:00:00+00:00", "2026-01-01T03:00:00+00:00") == [
        "2026-01-01T00:10:00Z",
        "2026-01-01T01:40:00Z",
    ]
    assert every_90.latest_at_or_before(at("2026-01-01T03:00:00+00:00")) == at(
        "2026-01-01T01:40:00+00:00"
    )
    assert every_90.latest_at_or_before(at("2026-01-01T00:00:00+00:00")) is None


def test_madrid_spring_forward_fires_skipped_times_once_after_the_gap() -> None:
    # 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:00 and 02:30 do not exist.
    half_hourly = Schedule(cron="*/30 * * * *", timezone="Europe/Madrid")
    assert slots(half_hourly, "2026-03-29T01:15:00+01:00", "2026-03-29T03:40:00+02:00") == [
        "2026-03-29T00:30:00Z",  # 01:30 CET
        "2026-03-29T01:00:00Z",  # 02:00, 02:30 and 03:00: the first instant after the gap
        "2026-03-29T01:30:00Z",  # 03:30 CEST
    ]
    daily = Schedule(cron="30 2 * * *", timezone="Europe/Madrid")
    assert slots(daily, "2026-03-28T00:00:00+01:00", "2026-03-30T12:00:00+02:00") == [
        "2026-03-28T01:30:00Z",  # 02:30 CET
        "2026-03-29T01:00:00Z",  # 02:30 does not exist: 03:00 CEST, once
        "2026-03-30T00:30:00Z",  # 02:30 CEST
    ]


def test_madrid_fall_back_fires_a_repeated_time_once_the_first_time() -> None:
    # 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happen twice.
    hourly = Schedule(cron="0 * * * *", timezone="Europe/Madrid")
    assert slots(hourly, "2026-10-25T00:30:00+02:00", "2026-10-25T04:30:00+01:00") == [
        "2026-10-24T23:00:00Z",  # 01:00 CEST
        "2026-10-25T00:00:00Z",  # 02:00 CEST (the first 02:00; not again at 02:00 CET)
        "2026-10-25T02:00:00Z",  # 03:00 CET
        "2026-10-25T03:00:00Z",  # 04:00 CET
    ]
    daily = Schedule(cron="30 2 * * *", timezone="Europe/Madrid")
    assert slots(daily, "2026-10-25T00:00:00+02:00", "2026-10-26T12:00:00+01:00") == [
        "2026-10-25T00:30:00Z",  # the first 02:30
        "2026-10-26T01:30:00Z",
    ]


def test_new_york_spring_forward_and_fall_back() -> None:
    daily = Schedule(cron="30 2 * * *", timezone="America/New_York")
    # 2026-03-08: 02:00 EST -> 03:00 EDT.
    assert slots(daily, "2026-03-07T12:00:00-05:00", "2026-03-09T12:00:00-04:00") == [
        "2026-03-08T07:00:00Z",  # 03:00 EDT, the end of the gap
        "2026-03-09T06:30:00Z",
    ]
    early = Schedule(cron="30 1 * * *", timezone="America/New_York")
    # 2026-11-01: 02:00 EDT -> 01:00 EST; 01:30 happens twice.
    assert slots(early, "2026-10-31T12:00:00-04:00", "2026-11-02T12:00:00-05:00") == [
        "2026-11-01T05:30:00Z",  # 01:30 EDT, the first
        "2026-11-02T06:30:00Z",
    ]


def test_a_six_field_cron_has_seconds_last() -> None:
    every_ten_seconds = Schedule(cron="* * * * * */10")
    assert slots(every_ten_seconds, "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:30+00:00") == [
        "2026-01-01T00:00:10Z",
        "2026-01-01T00:00:20Z",
        "2026-01-01T00:00:30Z",
    ]


def test_month_ends() -> None:
    last_day = Schedule(cron="0 0 L * *")
    assert slots(last_day, "2026-01-15T00:00:00+00:00", "2026-04-15T00:00:00+00:00") == [
        "2026-01-31T00:00:00Z",
        "2026-02-28T00:00:00Z",
        "2026-03-31T00:00:00Z",
    ]
    thirty_first = Schedule(cron="0 0 31 * *")
    assert slots(thirty_first, "2026-01-15T00:00:00+00:00", "2026-06-01T00:00:00+00:00") == [
        "2026-01-31T00:00:00Z",
        "2026-03-31T00:00:00Z",
        "2026-05-31T00:00:00Z",
    ]


def test_the_last_cron_slot_at_or_before_a_time() -> None:
    daily = Schedule(cron="0 6 * * *", timezone="Europe/Madrid")
    assert daily.latest_at_or_before(at("2026-06-10T12:00:00+02:00")) == at(
        "2026-06-10T06:00:00+02:00"
    )


def test_cron_and_zone_checks() -> None:
    assert check_cron("*/5 * * * *") is None
    assert check_cron("* * * * * *") is None
    assert "5 fields" in (check_cron("* * *") or "")
    assert "invalid cron" in (check_cron("99 * * * *") or "")
    assert check_timezone("Europe/Madrid") is None
    assert "unknown time zone" in (check_timezone("Mars/Olympus") or "")
