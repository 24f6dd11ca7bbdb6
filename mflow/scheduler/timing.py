"""When a job's slots are (SPEC §5): frequencies aligned to a start, cron in a time zone, DST.

A slot is a UTC instant, kept as epoch seconds (float). `Schedule.next_after(t)` is the first
slot after t; everything else (what is due, what was missed) is built on it.

- `frequency`: slots are `start + k·period` (start defaults to the Unix epoch, so `1h` fires
  on the hour UTC).
- `cron`: 5 fields, or 6 with seconds as the sixth (croniter's convention), evaluated in
  `timezone` (zoneinfo) on local wall-clock times. A local time that a spring-forward skips
  fires once, at the first instant after the gap (every skipped time of that gap is that one
  slot); a local time that occurs twice (fall back) fires once, the first time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

_FREQUENCY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Cron times are walked from the wall-clock time of t (less a second): a wall time before it
# is never after t, even across a DST change (a skipped time maps to the gap's end, a repeated
# one to its first occurrence), so nothing is missed, and a minutely cron is not walked back.
_LOOKBACK = timedelta(seconds=1)


def parse_frequency(value: float | int | str) -> float:
    """`60`, `"90"`, `"5m"`, `"1h"`, `"1d"` -> seconds (> 0). Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _FREQUENCY.match(value)
        if not match:
            raise ValueError(value)
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(value)
    return seconds


@dataclass(frozen=True)
class Schedule:
    """A job's schedule: `frequency` seconds from `start`, or a `cron` in `timezone`."""

    frequency: float | None = None
    cron: str | None = None
    timezone: str = "UTC"
    start: float = 0.0

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def next_after(self, t: float) -> float:
        """The first slot strictly after t."""
        if self.frequency is not None:
            if t < self.start:
                return self.start
            k = math.floor((t - self.start) / self.frequency) + 1
            while self.start + k * self.frequency <= t:  # float rounding
                k += 1
            return self.start + k * self.frequency
        if self.cron is None:
            raise ValueError("a job without frequency or cron has no slots")
        return self._next_cron(t)

    def slots(self, after: float, until: float, limit: int) -> list[float]:
        """Slots in (after, until], oldest first, at most `limit` of them."""
        found: list[float] = []
        t = after
        while len(found) < limit:
            t = self.next_after(t)
            if t > until:
                break
            found.append(t)
        return found

    def latest_at_or_before(self, t: float) -> float | None:
        """The last slot at or before t (None before the first)."""
        if self.frequency is not None:
            if t < self.start:
                return None
            return self.start + math.floor((t - self.start) / self.frequency) * self.frequency
        # A cron: step back until a slot is found, a day at a time.
        back = 86400.0
        while back <= 86400.0 * 400:
            found = self.slots(t - back, t, 100_000)
            if found:
                return found[-1]
            back *= 2
        return None

    # ------------------------------------------------------------------ cron

    def _next_cron(self, t: float) -> float:
        from croniter import croniter

        zone = self.zone
        local = datetime.fromtimestamp(t, zone).replace(tzinfo=None) - _LOOKBACK
        times = croniter(self.cron, local)
        while True:
            wall = times.get_next(datetime)
            slot = self._instant(wall)
            if slot > t:
                return slot

    def _instant(self, wall: datetime) -> float:
        """The UTC instant of a local wall-clock time: the first of two (fall back), the end of
        the gap for a time that does not exist (spring forward)."""
        zone = self.zone
        first = wall.replace(tzinfo=zone, fold=0)
        utc = first.astimezone(UTC)
        if utc.astimezone(zone).replace(tzinfo=None) == wall:
            return utc.timestamp()
        # Skipped by the clocks: fold=0 and fold=1 land on both sides of the transition.
        low = wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp()
        high = utc.timestamp()
        low, high = min(low, high), max(low, high)
        after = datetime.fromtimestamp(high, zone).utcoffset()
        while high - low > 0.5:  # the first second whose offset is the new one
            middle = (low + high) / 2
            offset = datetime.fromtimestamp(middle, zone).utcoffset()
            if offset == after:
                high = middle
            else:
                low = middle
        return float(math.ceil(high))


def check_cron(expression: str) -> str | None:
    """None when croniter takes the expression (5 or 6 fields), else why not."""
    from croniter import croniter

    fields = expression.split()
    if len(fields) not in (5, 6):
        return f"a cron expression has 5 fields, or 6 with seconds last; this one has {len(fields)}"
    try:
        croniter(expression)
    except (ValueError, KeyError) as exc:
        return f"invalid cron expression: {exc}"
    return None


def check_timezone(name: str) -> str | None:
    """None for a known IANA time zone, else why not."""
    from zoneinfo import ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone '{name}' (an IANA name, like Europe/Madrid)"
    return None
