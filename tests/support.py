"""Helpers shared by the test modules (importable as `support`: pyproject sets pythonpath)."""

from __future__ import annotations

from pathlib import Path

# A bash command that records when the task started and ended, from inside the task.
TRACE = (
    'echo "$MFLOW_TASK_ID start $(date +%s.%N)" >> trace; sleep {s}; '
    'echo "$MFLOW_TASK_ID end $(date +%s.%N)" >> trace'
)


def intervals(path: Path) -> list[tuple[float, float]]:
    """(start, end) pairs from the lines TRACE tasks wrote."""
    starts: dict[str, float] = {}
    pairs = []
    for line in path.read_text().splitlines():
        tid, what, t = line.split()
        if what == "start":
            starts[tid] = float(t)
        else:
            pairs.append((starts[tid], float(t)))
    return pairs


def max_overlap(pairs: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    points = sorted([(s, 1) for s, _ in pairs] + [(e, -1) for _, e in pairs])
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return not stat.read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return False
