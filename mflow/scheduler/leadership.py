"""Which scheduler leads (SPEC §5): a lease row on SQL stores, kazoo's Election on ZooKeeper.

Both answer `current()`: the `Lease` (with its epoch) while this scheduler leads, else None.
The daemon asks before every turn, and every claim it makes carries the epoch, so a leader
that lost its lease without noticing (paused by SIGSTOP or a long GC, cut off from the
network) is fenced out by the store itself.

- `LeaseLeadership` (SQLite, PostgreSQL, Oracle): try to take the lease every second; the
  holder renews it every `RENEW` seconds for `TTL` seconds; a holder that could not renew
  for `TTL` (it was paused) drops it at once. Failover: at most TTL + 1 s after the leader
  died.
- `ElectionLeadership` (ZooKeeper): kazoo's Election recipe; the elected scheduler takes a new
  epoch and writes `<root>/leader`. The connection state is watched: SUSPENDED stops firing at
  once, LOST leaves the election, which is joined again when the session comes back.
  Failover: the dead leader's session timeout (10 s).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mflow.state.base import Lease, StateStore

log = logging.getLogger(__name__)

TTL = 10.0  # seconds a lease lasts unless renewed
RENEW = 2.0  # seconds between renewals
RETRY = 1.0  # seconds between tries to take the lease


class LeaseLeadership:
    def __init__(self, store: StateStore, name: str, hostname: str) -> None:
        self.store, self.name, self.hostname = store, name, hostname
        self.lease: Lease | None = None
        self.renewed = 0.0  # monotonic time of the last successful take or renewal
        self.next_try = 0.0

    def current(self) -> Lease | None:
        now = time.monotonic()
        if self.lease is not None and now - self.renewed > TTL:
            log.warning(
                "lease of epoch %s not renewed for %.0f s: dropped",
                self.lease.epoch,
                now - self.renewed,
            )
            self.lease = None  # paused past its end: another may lead already
        if self.lease is None:
            if now >= self.next_try:
                self.next_try = now + RETRY
                self.lease = self.store.acquire_lease(self.name, self.hostname, TTL)
                if self.lease is not None:
                    self.renewed = now
        elif now - self.renewed >= RENEW:
            if self.store.renew_lease(self.lease, TTL):
                self.renewed = now
            else:
                self.lease = None
        return self.lease

    def wait(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(max(0.0, min(seconds, RENEW if self.lease else RETRY)))

    def resign(self) -> None:
        if self.lease is not None:
            try:
                self.store.release_lease(self.lease)
            finally:
                self.lease = None


class ElectionLeadership:
    def __init__(self, store: Any, name: str, hostname: str) -> None:
        from kazoo.protocol.states import KazooState

        self.store, self.name, self.hostname = store, name, hostname
        self.client = store.client
        self.states = KazooState
        self.lease: Lease | None = None
        self.suspended = False
        self.lost = threading.Event()
        self.stopping = threading.Event()
        self.changed = threading.Event()  # wakes the daemon when leadership changes
        self.election = self.client.Election(store.nodes.path("scheduler", "election"), name)
        self.client.add_listener(self._on_state)
        self.thread = threading.Thread(target=self._contend, name="mflow-election", daemon=True)
        self.thread.start()

    def _on_state(self, state: str) -> None:  # kazoo's thread: must not block
        if state == self.states.SUSPENDED:
            self.suspended = True  # stop firing at once: the session may be gone
        elif state == self.states.LOST:
            self.suspended = True
            self.lost.set()
        else:
            self.suspended = False
        self.changed.set()

    def _contend(self) -> None:
        while not self.stopping.is_set():
            self.lost.clear()
            try:
                self.election.run(self._lead)
            except Exception as exc:  # the session went while contending: join again
                log.warning("election: %s: contending again", exc)
            if not self.stopping.is_set():
                self.stopping.wait(1.0)

    def _lead(self) -> None:
        lease = self.store.acquire_lease(self.name, self.hostname, 0)
        if lease is None:  # the last leader's node is still there: let its session end
            self.stopping.wait(1.0)
            return
        self.lease = lease
        self.changed.set()
        try:
            while not (self.stopping.is_set() or self.lost.is_set()):
                self.stopping.wait(0.5)
        finally:
            self.lease = None
            self.changed.set()
            if not self.lost.is_set():
                try:
                    self.store.release_lease(lease)
                except Exception:  # giving up leadership must not fail the scheduler
                    pass

    def current(self) -> Lease | None:
        return None if self.suspended else self.lease

    def wait(self, seconds: float, stop: threading.Event) -> None:
        deadline = time.monotonic() + max(0.0, seconds)
        self.changed.clear()
        while not stop.is_set() and not self.changed.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.changed.wait(min(left, 0.2))

    def resign(self) -> None:
        self.stopping.set()
        self.election.cancel()
        self.thread.join(timeout=10)


def leadership(store: StateStore, name: str, hostname: str) -> LeaseLeadership | ElectionLeadership:
    """The way this store elects a leader (no import of the other backend's driver)."""
    if type(store).__module__ == "mflow.state.zookeeper":
        return ElectionLeadership(store, name, hostname)
    return LeaseLeadership(store, name, hostname)
