"""Fixtures of the state-store contract suites (test_state_contract.py, test_state_operations.py):
a fresh store of each backend per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import STATE_BACKENDS

from mflow.state import StoreLocation, open_store
from mflow.state.base import StateStore


@pytest.fixture(params=STATE_BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty store of each backend (only that backend's service needed)."""
    if request.param == "sqlite":
        # A directory that does not exist yet: the store must create it.
        return f"sqlite:///{tmp_path / 'home' / 'state.db'}"
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return request.getfixturevalue("zk_url")


@pytest.fixture
def open_at(store_url: str) -> Iterator[Callable[[], StateStore]]:
    """Opens more stores on the same location (another process's view); all closed after."""
    opened: list[StateStore] = []

    def make() -> StateStore:
        store = open_store(StoreLocation(store_url))
        opened.append(store)
        return store

    yield make
    for store in reversed(opened):
        store.close()


@pytest.fixture
def store(open_at: Callable[[], StateStore]) -> StateStore:
    store = open_at()
    store.init()
    return store
