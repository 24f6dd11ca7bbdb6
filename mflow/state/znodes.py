"""The ZooKeeper store's layout: the URL, the znode paths, and records as JSON node values.

The tree itself is drawn in `zookeeper.py`'s docstring; `Znodes` is the one place that builds
its paths. Pure functions, no kazoo: what the SQL store keeps in `ddl.py`.
"""

from __future__ import annotations

import json
import zlib
from typing import Any
from urllib.parse import quote

from mflow.errors import ConfigError
from mflow.state.base import RunRecord, TaskRecord
from mflow.states import STATE_TEXT, PartitionStatus, RunState, TaskState

DEFAULT_ROOT = "/mflow"
REASON_LENGTH = 1000  # as in the SQL store
RESERVED = "0000000000"  # the node under runs/ that makes the first run id 1


def parse_zk_url(url: str) -> tuple[str, str]:
    """`zk://[user:password@]h1:2181,h2:2181/root` -> ("h1:2181,h2:2181", "/root")."""
    scheme, sep, rest = url.partition("://")
    hosts, _, root = rest.partition("/")
    hosts = hosts.rpartition("@")[2]  # credentials: zk_credentials
    root = root.split("?", 1)[0].strip("/")
    if scheme.lower() != "zk" or not sep or not hosts:
        raise ConfigError(
            f"invalid ZooKeeper store URL '{url}'", json_path="", hint="zk://host:port[,...]/root"
        )
    return hosts, f"/{root}" if root else DEFAULT_ROOT


def zk_credentials(url: str) -> str | None:
    """`user:password` of `zk://user:password@hosts/root`, for ZooKeeper's digest auth."""
    authority = url.partition("://")[2].partition("/")[0]
    userinfo, at, _ = authority.rpartition("@")
    if not at:
        return None
    from urllib.parse import unquote

    return unquote(userinfo)


def node_name(name: str) -> str:
    """A DAG or task name as one znode name (no '/', never '.' or '..')."""
    encoded = quote(name, safe="")
    return encoded.replace(".", "%2E") if encoded in {".", ".."} else encoded


BUCKETS = tuple(f"{b:02x}" for b in range(64))  # of a dataset's partition nodes
BUCKETED = ("partitions", "ready", "resubmit")  # trees in buckets; "running" is flat
INDEXES = {  # a partition's status -> the index tree that holds it while it has that status
    PartitionStatus.READY: "ready",
    PartitionStatus.RESUBMIT: "resubmit",
    PartitionStatus.RUNNING: "running",
}


def bucket(dataid: str) -> str:
    """The bucket of a dataid's nodes: the same on every host and in every Python."""
    return BUCKETS[zlib.crc32(dataid.encode()) % len(BUCKETS)]


def id_node(run_id: int) -> str:
    return f"{run_id:010d}"


class Znodes:
    """The paths of the layout under one root."""

    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def run(self, run_id: int) -> str:
        return self.path("runs", id_node(run_id))

    def tasks(self, run_id: int) -> str:
        return self.path("runs", id_node(run_id), "tasks")

    def lock(self, dag: str) -> str:
        return self.path("locks", node_name(dag))

    def dag_index(self, dag: str) -> str:
        return self.path("dags", node_name(dag))

    def children(self, run_id: int) -> str:
        return self.path("children", id_node(run_id))

    def tree(self, kind: str, dataset: str) -> str:
        """A dataset's tree of partition nodes (`partitions`) or of an index."""
        return self.path(kind, node_name(dataset))

    def tree_nodes(self, kind: str, dataset: str) -> list[str]:
        """The nodes a tree is made of before any partition: itself and its buckets."""
        base = self.tree(kind, dataset)
        return [base, *(f"{base}/{b}" for b in BUCKETS)] if kind in BUCKETED else [base]

    def partition(self, kind: str, dataset: str, dataid: str) -> str:
        """A partition's node in a tree."""
        base = self.tree(kind, dataset)
        if kind in BUCKETED:
            return f"{base}/{bucket(dataid)}/{node_name(dataid)}"
        return f"{base}/{node_name(dataid)}"


def dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def loads(data: bytes) -> dict[str, Any]:
    return json.loads(data.decode("utf-8")) if data else {}


# ---------------------------------------------------------------------- JSON <-> records


def run_from_value(run_id: int, value: dict[str, Any]) -> RunRecord:
    return RunRecord(
        id=run_id,
        dag=value["dag"],
        taskfile=value.get("taskfile") or "",
        status=RunState(value["status"]),
        host=value.get("host") or "",
        pid=int(value.get("pid") or 0),
        started_at=float(value["started_at"]),
        ended_at=value.get("ended_at"),
        heartbeat_at=float(value["heartbeat_at"]),
        log_directory=value.get("log_directory") or "",
        parent_run_id=value.get("parent_run_id"),
        parent_task_id=value.get("parent_task_id"),
        note=value.get("note"),
    )


def task_from_value(run_id: int, task_id: str, value: dict[str, Any]) -> TaskRecord:
    return TaskRecord(
        run_id=run_id,
        task_id=task_id,
        state=TaskState(value.get("state", TaskState.NONE.value)),
        attempt=int(value.get("attempt", 0)),
        started_at=value.get("started_at"),
        ended_at=value.get("ended_at"),
        exit_code=value.get("exit_code"),
        pid=value.get("pid"),
        host=value.get("host"),
        log_path=value.get("log_path"),
        reason=value.get("reason"),
    )


def task_value(change: TaskRecord) -> bytes:
    reason = change.reason
    if reason is not None and len(reason) > REASON_LENGTH:
        reason = reason[: REASON_LENGTH - 3] + "..."
    value = {
        "state": STATE_TEXT[change.state],
        "attempt": change.attempt,
        "started_at": change.started_at,
        "ended_at": change.ended_at,
        "exit_code": change.exit_code,
        "pid": change.pid,
        "host": change.host,
        "log_path": change.log_path,
        "reason": reason,
    }
    return dumps({k: v for k, v in value.items() if v is not None})
