"""Service fixtures for the test suite: a PostgreSQL schema and a ZooKeeper chroot per test.

Each service follows dramatiq's rule: when the service is absent the tests that need it are
*skipped* on a developer machine and *fail* when the environment variable ``CI`` is true, so a
broken CI image cannot turn the integration suite into a row of silent skips.

- ``postgres_url``: an SQLAlchemy URL whose ``search_path`` selects a fresh schema ``t_<uuid8>``
  in the database named by ``MFLOW_TEST_PG_URL``; the schema is dropped afterwards.
- ``zookeeper_server``: one throw-away ZooKeeper server per session, started from Debian's
  ``zookeeper`` package on a free port (or ``MFLOW_TEST_ZK_HOSTS``, an existing ensemble).
- ``zk_url``: ``zk://HOST:PORT/mflow-test-<uuid8>``; the (empty) chroot node exists when the
  test starts and is deleted recursively afterwards.

Environment overrides: ``MFLOW_TEST_PG_URL``, ``MFLOW_TEST_ZK_HOSTS``, ``MFLOW_TEST_ZK_JAR``
(path of ``zookeeper.jar``; point it at a missing file to see the skip/fail behaviour).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError
from psycopg import sql
from sqlalchemy.engine import make_url

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_CONNECT_TIMEOUT = 3  # seconds; a local server answers at once, an absent one must not hang

ZK_CONF_DIR = "/etc/zookeeper/conf"
ZK_JAR = "/usr/share/java/zookeeper.jar"
# zookeeper.jar's manifest Class-Path brings netty, jetty, jackson, slf4j-api, ...; the Debian
# scripts add nothing else, so the server would log through slf4j's no-op binding. These two
# give it a log4j backend, so a server that does not come up leaves a log worth reading.
ZK_LOG_JARS = ("/usr/share/java/slf4j-log4j12.jar", "/usr/share/java/log4j-1.2.jar")
ZK_START_TIMEOUT = 30.0
ZK_START_ATTEMPTS = 3  # free_port() can race with another process grabbing the same port


def in_ci() -> bool:
    """True when the environment variable ``CI`` holds a true value."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def service_unavailable(message: str) -> NoReturn:
    """Skip the test locally; fail it in CI, where every service must be present."""
    if in_ci():
        pytest.fail(f"{message} (CI is set: services must be available)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- PostgreSQL


def _pg_base_url() -> str:
    return os.environ.get("MFLOW_TEST_PG_URL", DEFAULT_PG_URL)


def _pg_conninfo(url: str) -> str:
    """The libpq form of an SQLAlchemy URL (psycopg does not understand ``+psycopg``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_available() -> str:
    """The admin conninfo of the test database; skips/fails when the server is not there."""
    base_url = _pg_base_url()
    conninfo = _pg_conninfo(base_url)
    try:
        with psycopg.connect(conninfo, connect_timeout=PG_CONNECT_TIMEOUT) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        shown = make_url(base_url).render_as_string(hide_password=True)
        service_unavailable(f"PostgreSQL not reachable at {shown}: {exc}".strip())
    return conninfo


@pytest.fixture
def postgres_url(postgres_available: str) -> Iterator[str]:
    """An SQLAlchemy URL selecting a fresh schema ``t_<uuid8>``, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(
        postgres_available, connect_timeout=PG_CONNECT_TIMEOUT, autocommit=True
    ) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = make_url(_pg_base_url()).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    _drop_schema(postgres_available, schema)


def _drop_schema(conninfo: str, schema: str) -> None:
    drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
    with psycopg.connect(conninfo, connect_timeout=PG_CONNECT_TIMEOUT, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '5s'")
        try:
            conn.execute(drop)
        except psycopg.errors.LockNotAvailable:
            # A test left a connection idle in a transaction on this schema's tables; it
            # would block the drop forever, so end those sessions and try again.
            conn.execute(
                """
                SELECT pg_terminate_backend(l.pid)
                FROM pg_locks l
                JOIN pg_class c ON c.oid = l.relation
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %s AND l.pid <> pg_backend_pid()
                """,
                (schema,),
            )
            conn.execute(drop)


# ---------------------------------------------------------------------------- ZooKeeper


@dataclass(frozen=True)
class ZooKeeperServer:
    """Where the test ZooKeeper listens; ``hosts`` is a kazoo connection string."""

    host: str
    port: int
    hosts: str


def zookeeper_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when the server at host:port answers the four-letter word ``ruok`` with ``imok``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"ruok")
            return sock.recv(16) == b"imok"
    except OSError:
        return False


def zookeeper_classpath(zk_jar: str) -> str:
    """The server's classpath: what Debian's zkEnv.sh uses plus a logging backend."""
    entries = [ZK_CONF_DIR, zk_jar, *ZK_LOG_JARS]
    return os.pathsep.join(entry for entry in entries if os.path.exists(entry))


def _log_tail(path: Path, lines: int | None = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:] if lines else text.splitlines()) or "(empty log)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start_zookeeper(
    java: str, zk_jar: str, workdir: Path
) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start one server in workdir; the process and its port, or None when it did not come up."""
    port = free_port()
    (workdir / "data").mkdir(exist_ok=True)
    config = workdir / "zoo.cfg"
    config.write_text(
        "tickTime=2000\n"
        f"dataDir={workdir / 'data'}\n"
        f"clientPort={port}\n"
        "clientPortAddress=127.0.0.1\n"
        "admin.enableServer=false\n"
        "4lw.commands.whitelist=*\n"
        "maxClientCnxns=0\n"
        # Test data need not survive a power cut; skipping fsync makes writes much faster.
        "forceSync=no\n"
    )
    log4j = workdir / "log4j.properties"
    log4j.write_text(
        "log4j.rootLogger=INFO, CONSOLE\n"
        "log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1} - %m%n\n"
    )
    argv = [
        java,
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-cp",
        zookeeper_classpath(zk_jar),
        f"-Dzookeeper.log.dir={workdir}",
        f"-Dlog4j.configuration=file:{log4j}",
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        str(config),
    ]
    with (workdir / "zookeeper.log").open("wb") as log:  # each attempt starts a fresh log
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=workdir
        )
    deadline = time.monotonic() + ZK_START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if zookeeper_answers("127.0.0.1", port):
            return process, port
        time.sleep(0.1)
    _stop(process)
    return process, None


def _external_zookeeper(hosts: str) -> ZooKeeperServer:
    """An existing server from MFLOW_TEST_ZK_HOSTS, checked with a real kazoo session."""
    client = KazooClient(hosts=hosts, timeout=3.0)
    try:
        client.start(timeout=3.0)
    except KazooTimeoutError:
        service_unavailable(f"ZooKeeper not reachable at MFLOW_TEST_ZK_HOSTS={hosts}")
    finally:
        client.stop()
        client.close()
    host, _, port = hosts.split(",")[0].partition(":")
    return ZooKeeperServer(host=host, port=int(port or 2181), hosts=hosts)


@pytest.fixture(scope="session")
def zookeeper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """A ZooKeeper server for the whole session (Debian's package, on a free port)."""
    external = os.environ.get("MFLOW_TEST_ZK_HOSTS")
    if external:
        yield _external_zookeeper(external)
        return

    zk_jar = os.environ.get("MFLOW_TEST_ZK_JAR", ZK_JAR)
    java = shutil.which("java")
    if not os.path.exists(zk_jar):
        service_unavailable(
            f"ZooKeeper not installed ({zk_jar} missing): apt-get install zookeeper, "
            "or set MFLOW_TEST_ZK_HOSTS to an existing server"
        )
    if java is None:
        service_unavailable("ZooKeeper needs Java: no 'java' on PATH")

    workdir = tmp_path_factory.mktemp("zookeeper")
    log = workdir / "zookeeper.log"
    for _attempt in range(ZK_START_ATTEMPTS):
        process, port = _start_zookeeper(java, zk_jar, workdir)
        # Retry only the race on the port; any other failure will not fix itself.
        if port is not None or "Address already in use" not in _log_tail(log, lines=None):
            break
    if port is None:
        if process.returncode is not None and process.returncode >= 0:
            what = f"exited with code {process.returncode} before answering 'ruok'"
        else:
            what = f"did not answer 'ruok' within {ZK_START_TIMEOUT:.0f}s"
        pytest.fail(
            f"ZooKeeper {what}; last lines of {log}:\n{_log_tail(log)}",
            pytrace=False,
        )
    try:
        yield ZooKeeperServer(host="127.0.0.1", port=port, hosts=f"127.0.0.1:{port}")
    finally:
        _stop(process)


@contextmanager
def _zk_admin(hosts: str) -> Iterator[KazooClient]:
    client = KazooClient(hosts=hosts, timeout=10.0)
    client.start(timeout=10.0)
    try:
        yield client
    finally:
        client.stop()
        client.close()


@pytest.fixture
def zk_url(zookeeper_server: ZooKeeperServer) -> Iterator[str]:
    """``zk://HOST:PORT/mflow-test-<uuid8>``: a chroot of its own, deleted after the test."""
    chroot = f"/mflow-test-{uuid.uuid4().hex[:8]}"
    # Created up front, like postgres_url's schema (kazoo warns about a missing chroot); the
    # admin session is not held during the test, so a test may stop or cut its own clients.
    with _zk_admin(zookeeper_server.hosts) as zk:
        zk.create(chroot)
    yield f"zk://{zookeeper_server.hosts}{chroot}"
    with _zk_admin(zookeeper_server.hosts) as zk:
        zk.delete(chroot, recursive=True)
