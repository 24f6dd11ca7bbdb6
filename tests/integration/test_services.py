"""Smoke tests of the service fixtures: each test gets a live, private PostgreSQL schema and
ZooKeeper chroot, and both are gone after the test.

The fixtures live in tests/conftest.py; the state-store contract suite builds on them, so a
failure here points at the test environment rather than at mflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from kazoo.client import KazooClient

# Schemas and chroots handed out so far in this module, to prove no two tests share one.
seen_schemas: list[str] = []
seen_chroots: list[str] = []


@contextmanager
def connected(url: str) -> Iterator[sa.Connection]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


@contextmanager
def kazoo_client(hosts: str) -> Iterator[KazooClient]:
    client = KazooClient(hosts=hosts, timeout=10.0)
    client.start(timeout=10.0)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def chrooted_hosts(zk_url: str) -> str:
    """kazoo takes ``host:port/chroot`` as its hosts string, so drop only the scheme."""
    assert zk_url.startswith("zk://")
    return zk_url.removeprefix("zk://")


@pytest.mark.postgres
def test_postgres_url_selects_its_own_schema(postgres_url: str) -> None:
    assert "options=-csearch_path%3Dt_" in postgres_url
    with connected(postgres_url) as conn:
        schema = conn.scalar(sa.text("SELECT current_schema()"))
        conn.execute(sa.text("CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL)"))
        conn.execute(sa.text("INSERT INTO items VALUES (1, 'one'), (2, 'two')"))
        rows = conn.execute(sa.text("SELECT id, name FROM items ORDER BY id")).all()
        # The schema that actually holds the table the unqualified name resolved to.
        table_schema = conn.scalar(
            sa.text("SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = :oid"),
            {"oid": conn.scalar(sa.text("SELECT 'items'::regclass::oid"))},
        )
    assert postgres_url.endswith(f"search_path%3D{schema}")
    assert [tuple(row) for row in rows] == [(1, "one"), (2, "two")]
    assert table_schema == schema


@pytest.mark.postgres
@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_gets_a_fresh_schema_and_the_last_one_is_dropped(
    postgres_url: str, turn: str
) -> None:
    with connected(postgres_url) as conn:
        schema = conn.scalar(sa.text("SELECT current_schema()"))
        assert schema not in seen_schemas
        assert conn.scalar(sa.text("SELECT to_regclass('items')")) is None
        conn.execute(sa.text("CREATE TABLE items (id integer PRIMARY KEY)"))
        leftovers = conn.scalars(
            sa.text("SELECT nspname FROM pg_namespace WHERE nspname = ANY(:names)"),
            {"names": seen_schemas},
        ).all()
    assert leftovers == []
    seen_schemas.append(schema)


@pytest.mark.zookeeper
def test_znode_create_read_update_delete(zk_url: str) -> None:
    with kazoo_client(chrooted_hosts(zk_url)) as zk:
        zk.create("/runs/r1", b"pending", makepath=True)
        assert zk.get("/runs/r1")[0] == b"pending"
        zk.set("/runs/r1", b"done")
        assert zk.get("/runs/r1")[0] == b"done"
        assert zk.get_children("/runs") == ["r1"]
        zk.delete("/runs/r1")
        assert zk.exists("/runs/r1") is None


@pytest.mark.zookeeper
def test_ephemeral_node_disappears_when_its_client_stops(zk_url: str) -> None:
    hosts = chrooted_hosts(zk_url)
    with kazoo_client(hosts) as watcher:
        watcher.ensure_path("/leader")
        with kazoo_client(hosts) as owner:
            owner.create("/leader/me", b"owner", ephemeral=True)
            assert watcher.exists("/leader/me") is not None
        # A clean session close removes ephemeral nodes at once, not after the session timeout.
        assert watcher.exists("/leader/me") is None


@pytest.mark.zookeeper
def test_sequential_znodes_increase(zk_url: str) -> None:
    with kazoo_client(chrooted_hosts(zk_url)) as zk:
        paths = [zk.create("/queue/item-", sequence=True, makepath=True) for _ in range(5)]
        numbers = [int(path.rsplit("-", 1)[1]) for path in paths]
        assert numbers == sorted(numbers)
        assert len(set(numbers)) == len(numbers)
        assert sorted(zk.get_children("/queue")) == [p.rsplit("/", 1)[1] for p in paths]


@pytest.mark.zookeeper
@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_test_gets_a_fresh_chroot_and_the_last_one_is_deleted(zk_url: str, turn: str) -> None:
    hosts = chrooted_hosts(zk_url)
    chroot = "/" + hosts.split("/", 1)[1]
    assert chroot not in seen_chroots
    with kazoo_client(hosts) as zk:
        zk.create("/marker", b"x", makepath=True)
    with kazoo_client(hosts.split("/", 1)[0]) as root:
        assert root.exists(chroot + "/marker") is not None
        assert [c for c in seen_chroots if root.exists(c) is not None] == []
    seen_chroots.append(chroot)
