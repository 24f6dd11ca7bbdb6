"""The schedulers as operators see them (`mflow cluster status`, the HTTP API): the leader,
since when and at which epoch, and the members with their last heartbeat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mflow.state.base import Lease, Member, StateStore


@dataclass(frozen=True)
class Cluster:
    leader: Lease | None
    members: list[Member]

    def as_dict(self) -> dict[str, Any]:
        """`{"leader": {name, hostname, since, epoch} | null, "followers": [{name, hostname,
        since}]}` (SPEC §5); each follower also says its last heartbeat and pid."""
        leader = self.leader
        return {
            "leader": None
            if leader is None
            else {
                "name": leader.holder,
                "hostname": leader.hostname,
                "since": leader.since,
                "epoch": leader.epoch,
            },
            "followers": [
                {
                    "name": m.name,
                    "hostname": m.hostname,
                    "since": m.since,
                    "heartbeat": m.heartbeat_at,
                    "pid": m.pid,
                }
                for m in self.members
            ],
        }


def cluster(store: StateStore) -> Cluster:
    return Cluster(store.leader(), store.members())
