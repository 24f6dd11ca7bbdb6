"""The SQL store's engine: connections that give up in time, and SQLite set up for many processes.

PostgreSQL and Oracle connections time out after CONNECT_TIMEOUT (an unreachable server must
not hang a run) and are pinged before reuse.

SQLite. Many mflow processes (a parent, its child runs, concurrent starters) share one file.
Every connection gets `busy_timeout` (waits instead of failing with "database is locked"), WAL
(readers never block the writer) and `synchronous=NORMAL`. Write transactions start with
`BEGIN IMMEDIATE`, taking the write lock before their first read, so a read-then-write can
never fail halfway with SQLITE_BUSY on the lock upgrade; reads use a plain (deferred) BEGIN.
This is SQLAlchemy's documented pysqlite recipe: the driver's own BEGIN is turned off
(`isolation_level = None`) and a `begin` event emits ours.

Durability trade-off: in WAL mode with synchronous=NORMAL a commit is in the WAL file when it
returns, so it survives the crash or SIGKILL of any process; only an OS crash or power cut can
lose the last few commits (the database stays consistent). That buys fast commits on the hot
path (`record`) for runs of thousands of short tasks.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import ArgumentError

from mflow import connections, files
from mflow.errors import BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from mflow.state import StoreLocation

SQLITE_BUSY_TIMEOUT = 30.0  # seconds a writer waits for another process's write lock
CONNECT_TIMEOUT = 10  # seconds; an unreachable server must not hang a run
DEFERRED = "mflow_deferred"  # execution option: this SQLite transaction only reads


def create_store_engine(location: StoreLocation, display_url: str) -> Engine:
    """The engine of the store at `location`; BackendUnavailable if SQLite's directory cannot
    be created."""
    kwargs: dict[str, Any] = {}
    if location.scheme == "postgresql":
        kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT}}
    elif location.scheme == "oracle":
        kwargs = {
            "pool_pre_ping": True,
            "connect_args": {"tcp_connect_timeout": CONNECT_TIMEOUT},
        }
    try:
        engine = connections.create_engine(location.datasource or location.url, **kwargs)
    except ArgumentError as exc:  # NoSuchModuleError (an unknown driver) is one
        raise ConfigError(
            f"state store URL {display_url}: {exc} (from {location.origin})",
            json_path="",
            hint="use sqlite:///path, postgresql+psycopg://..., oracle+oracledb://... or zk://",
        ) from None
    except ValueError as exc:  # a port that is not a number...
        what = "its port is not a number" if "int()" in str(exc) else str(exc)
        raise ConfigError(
            f"state store URL {display_url}: {what} (from {location.origin})", json_path=""
        ) from None
    if location.scheme == "sqlite":
        database = engine.url.database
        if database and database != ":memory:" and not database.startswith("file:"):
            file = Path(database).expanduser()
            try:
                files.make_private_dir(file.parent)
                files.create_private_file(file)
            except OSError as exc:
                raise BackendUnavailable(
                    f"state store {display_url} cannot be reached: cannot create "
                    f"{exc.filename} ({exc.strerror})"
                ) from None
        connections.own_sqlite_transactions(engine, _sqlite_begin, _sqlite_connect)
    return engine


def _sqlite_connect(dbapi_connection: sqlite3.Connection) -> None:
    # SQLAlchemy emits BEGIN itself (_sqlite_begin); the driver's own BEGIN would come too
    # late (only before the first write) to take the write lock up front.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    # Switching a new file to WAL needs an exclusive lock, and SQLite can report "locked"
    # at once instead of waiting when several processes open a fresh file together.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _sqlite_begin(conn: Connection) -> str:
    deferred = conn.get_execution_options().get(DEFERRED, False)
    return "BEGIN" if deferred else "BEGIN IMMEDIATE"
