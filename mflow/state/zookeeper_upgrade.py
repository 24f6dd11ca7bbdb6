"""Upgrading a ZooKeeper store's partitions from the layout of mflow before 2026-12-06.

That layout kept every node of a dataset under one parent, `partitions/<dataset>/<dataid>`
(and `ready/`, `resubmit/` alike), and had no `running/` index. The layout of
`zookeeper_partitions.py` puts them in buckets; `<root>/partitions` holds LAYOUT once a store
has it. The first process that needs partitions and finds the old layout upgrades the store,
holding a lock so that one process does it:

1. each old partition node (a child of `partitions/<dataset>` with a JSON value; a bucket has
   none) is copied into its bucket, then deleted (or, when its name is a bucket's, emptied:
   it serves as that bucket);
2. the index trees, derived data, are deleted and written again from the partition statuses;
3. LAYOUT is written: every step before is safe to repeat, so a process killed midway leaves
   a store the next one upgrades.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import unquote

from kazoo.exceptions import NodeExistsError, NoNodeError

from mflow.state.znodes import INDEXES, loads
from mflow.states import PartitionStatus

if TYPE_CHECKING:
    from kazoo.client import KazooClient

    from mflow.state.znodes import Znodes

LAYOUT = b'{"partitions_layout": 2}'


def ensure_layout(client: KazooClient, nodes: Znodes) -> None:
    """The store's partitions are in the current layout (created so, or upgraded now)."""
    top = nodes.path("partitions")
    try:
        data, _ = client.retry(client.get, top)
    except NoNodeError:
        try:
            client.retry(client.create, top, LAYOUT, makepath=True)
            return
        except NodeExistsError:
            data, _ = client.retry(client.get, top)
    if data == LAYOUT:
        return
    with client.Lock(nodes.path("upgrade-lock"), "partitions layout"):
        data, _ = client.retry(client.get, top)
        if data != LAYOUT:  # not done by the process that held the lock before
            for dataset in client.retry(client.get_children, top):
                _upgrade_dataset(client, nodes, dataset)
            client.retry(client.set, top, LAYOUT)


def _upgrade_dataset(client: KazooClient, nodes: Znodes, name: str) -> None:
    """One dataset (`name`: its node's name): partition nodes into buckets, then indexes."""
    dataset = unquote(name)
    base, *buckets = nodes.tree_nodes("partitions", dataset)
    for path in buckets:
        _create(client, path)
    for leaf in client.retry(client.get_children, base):
        data, _ = client.retry(client.get, f"{base}/{leaf}")
        if data:  # an old partition node (a bucket has no value)
            _create(client, nodes.partition("partitions", dataset, unquote(leaf)), data)
            if f"{base}/{leaf}" in buckets:  # it serves as that bucket from now on
                client.retry(client.set, f"{base}/{leaf}", b"")
            else:
                client.retry(client.delete, f"{base}/{leaf}")
    statuses = {}
    for path in buckets:
        for leaf in client.retry(client.get_children, path):
            data, _ = client.retry(client.get, f"{path}/{leaf}")
            statuses[unquote(leaf)] = PartitionStatus(loads(data)["status"])
    for kind in ("ready", "resubmit", "running"):  # derived data: written again
        client.retry(client.delete, nodes.tree(kind, dataset), recursive=True)
        for path in nodes.tree_nodes(kind, dataset):
            _create(client, path)
    for dataid, status in statuses.items():
        if status in INDEXES:
            _create(client, nodes.partition(INDEXES[status], dataset, dataid))


def _create(client: KazooClient, path: str, data: bytes = b"") -> None:
    try:
        client.retry(client.create, path, data, makepath=True)
    except NodeExistsError:
        pass
