"""Database connections from datasources: SQLAlchemy engines for the SQL task type and store.

A connection is either an SQLAlchemy `url` or the seed's Oracle form (`connection_string` as
EZConnect or a TNS descriptor, `user`, `password`), which goes through python-oracledb in thin
mode: no Instant Client, no LD_LIBRARY_PATH. Secrets are resolved here, at connect time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mflow.secrets import expand, reveal_password

# driver module -> the pip extra (or package) that provides it
DRIVERS: dict[str, str] = {
    "psycopg": "pip install 'mflow[postgres]'",
    "oracledb": "pip install oracledb",
    "kazoo": "pip install kazoo",
}

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import URL, Connection, Engine

    from mflow.config import Datasource


def backend_name(conn: Datasource) -> str:
    """The database behind a connection: "oracle", "postgresql", "sqlite"... (no secret needed)."""
    if conn.kind != "sql":
        return conn.kind
    scheme = str(conn.fields["url"]).split(":", 1)[0]
    return scheme.split("+", 1)[0].lower()


def sqlalchemy_target(conn: Datasource) -> tuple[URL, dict[str, Any]]:
    """(URL, connect_args) for a datasource of kind "sql" or "oracle"."""
    from sqlalchemy.engine import URL, make_url

    what = f"connection '{conn.name}'"
    password = reveal_password(conn.fields, what=what)
    if conn.kind == "sql":
        url = make_url(expand(conn.fields["url"], what=what))
        if url.get_backend_name() == "sqlite" and url.get_driver_name() != "pysqlcipher":
            # SQLite has no login: its dialect rejects a URL with credentials ("Invalid SQLite
            # URL"). The password was still decrypted above, so a wrong passkey is reported.
            return url, {}
        if password is not None:
            url = url.set(password=password)
        if conn.get("user"):
            url = url.set(username=expand(conn.fields["user"], what=what))
        return url, {}
    user = expand(str(conn.get("user", "")), what=what)
    url = URL.create("oracle+oracledb", username=user or None, password=password)
    return url, {"dsn": expand(conn.fields["connection_string"], what=what)}


def create_engine(target: Datasource | str, **kwargs: Any) -> Engine:
    """An Engine for a datasource or a URL string."""
    import sqlalchemy

    if isinstance(target, str):
        url, connect_args = sqlalchemy.engine.make_url(target), {}
    else:
        url, connect_args = sqlalchemy_target(target)
    connect_args = {**connect_args, **kwargs.pop("connect_args", {})}
    return sqlalchemy.create_engine(url, connect_args=connect_args, **kwargs)


def own_sqlite_transactions(
    engine: Engine,
    begin: Callable[[Connection], str] = lambda conn: "BEGIN",
    on_connect: Callable[[Any], None] | None = None,
) -> None:
    """Let SQLAlchemy, not pysqlite, begin an SQLite engine's transactions (its documented
    recipe): pysqlite begins them late (before the first write only) and never for DDL.
    `begin` chooses the statement per transaction (BEGIN, BEGIN IMMEDIATE); `on_connect` sets
    up each new connection once the driver's own BEGIN is off."""
    from sqlalchemy import event

    def connect(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.isolation_level = None
        if on_connect is not None:
            on_connect(dbapi_connection)

    def start(conn: Connection) -> None:
        conn.exec_driver_sql(begin(conn))

    event.listen(engine, "connect", connect)
    event.listen(engine, "begin", start)
