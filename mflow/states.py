"""Run and task states: the vocabulary the runner, the events, the stores and task types share.

A module of its own so that a task type or a store can name a state without importing the
event machinery (or the other way round).
"""

from __future__ import annotations

from enum import Enum


class TaskState(str, Enum):
    NONE = "NONE"  # not started yet (shown to people as "not started")
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    UPSTREAM_FAILED = "UPSTREAM_FAILED"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value


class RunState(str, Enum):
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    def __str__(self) -> str:
        return self.value


# Each state's text, for the stores' hot paths: `state.value` goes through Enum's descriptor.
STATE_TEXT: dict[str, str] = {state: state.value for state in TaskState}

TERMINAL = frozenset(
    {TaskState.SUCCESS, TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.CANCELLED}
)


class PartitionStatus(str, Enum):
    """A partition's (dataset, dataid) state (SPEC §6). Absent: not produced yet."""

    RUNNING = "RUNNING"  # claimed by a runjob
    READY = "READY"
    FAILED = "FAILED"
    RESUBMIT = "RESUBMIT"  # to be produced again (`mflow data reset`)

    def __str__(self) -> str:
        return self.value


MAX_ID = 2**63 - 1  # run ids are the stores' 64-bit integers


def is_run_id(text: str) -> bool:
    """Digits (ASCII only) of an id a store can hold."""
    return text.isascii() and text.isdigit() and 0 < int(text) <= MAX_ID
