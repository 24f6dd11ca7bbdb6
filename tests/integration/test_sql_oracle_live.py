"""The sql / oracle task type on Oracle: the seed's connection form in thin mode, and live
tests against the database named by MFLOW_TEST_ORACLE_URL (skipped when it is not set), e.g.
``oracle+oracledb://system:secret@127.0.0.1:1521/?service_name=FREEPDB1``."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oracledb
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from mflow.config import Project, build_datasources
from mflow.connections import create_engine, sqlalchemy_target
from mflow.project import load_project
from mflow.states import TaskState
from mflow.tasks.base import TaskContext, TaskResult
from mflow.tasks.sql import SqlTask

SECRET = "Ora-pw-5Tq9-hidden"
EZCONNECT = "127.0.0.1:1/XEPDB1"  # nothing listens on port 1: connecting fails at once
TNS = (
    "(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST=127.0.0.1)(PORT=1))"
    "(CONNECT_DATA=(SERVICE_NAME=XEPDB1)))"
)


def write_project(
    tmp_path: Path, command: str, connection: dict[str, Any], task_type: str = "oracle"
) -> Project:
    task = {"id": "q", "type": task_type, "db": connection["name"], "command": command}
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": [task]}))
    (tmp_path / "oracle.json").write_text(json.dumps({"connections": [connection]}))
    return load_project(None, tmp_path / "tasks.json", tmp_path / "oracle.json")


def run_task(
    project: Project,
    tmp_path: Path,
    timeout: float | None = None,
    cancel_after: float | None = None,
) -> tuple[TaskResult, str, float]:
    log_path = tmp_path / "q.log"
    ctx = TaskContext(1, "q", 1, log_path, dict(os.environ), project, timeout=timeout)
    if cancel_after is not None:
        threading.Timer(cancel_after, ctx.cancelled.set).start()
    started = time.monotonic()
    with log_path.open("a", buffering=1, encoding="utf-8") as log:
        result = SqlTask().run(project.dag.tasks["q"], ctx, log)
    return result, log_path.read_text(), time.monotonic() - started


# --------------------------------------------------------------------------- seed form


@pytest.mark.parametrize("dsn", [EZCONNECT, TNS], ids=["ezconnect", "tns"])
def test_seed_form_builds_an_oracledb_url_with_dsn_connect_arg(dsn: str) -> None:
    doc = {
        "connections": [
            {"name": "ora", "connection_string": dsn, "user": "scott", "password": SECRET}
        ]
    }
    conn = build_datasources(doc, None, "oracle.json")["ora"]
    url, connect_args = sqlalchemy_target(conn)
    assert url.drivername == "oracle+oracledb"
    assert (url.username, url.password, url.host, url.database) == ("scott", SECRET, None, None)
    assert connect_args == {"dsn": dsn}
    engine = create_engine(conn)
    try:
        assert engine.dialect.driver == "oracledb"
        _, opts = engine.dialect.create_connect_args(engine.url)
        assert opts == {"user": "scott", "password": SECRET}  # the dsn comes from connect_args
        assert SECRET not in repr(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("dsn", [EZCONNECT, TNS], ids=["ezconnect", "tns"])
def test_seed_form_connects_in_thin_mode_without_instant_client(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_instant_client(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("init_oracle_client called: thick mode needs Instant Client")

    monkeypatch.setattr(oracledb, "init_oracle_client", no_instant_client)
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    monkeypatch.setenv("MFLOW_TEST_ORA_PW", SECRET)
    connection = {
        "name": "ora",
        "connection_string": dsn,
        "user": "scott",
        "password": "${MFLOW_TEST_ORA_PW}",
    }
    result, log, _ = run_task(write_project(tmp_path, "SELECT 1 FROM dual", connection), tmp_path)
    assert result.state is TaskState.FAILED
    assert result.reason is not None
    # DPY- errors come from the thin driver; thick mode without a client says DPI-1047.
    assert result.reason.startswith("cannot connect to 'ora': DPY-"), result.reason
    assert "DPI-1047" not in log
    assert oracledb.is_thin_mode()
    assert SECRET not in result.reason
    assert SECRET not in log


# --------------------------------------------------------------------------- live


@pytest.fixture
def oracle_url() -> str:
    url = os.environ.get("MFLOW_TEST_ORACLE_URL")
    if not url:
        pytest.skip("MFLOW_TEST_ORACLE_URL is not set")
    return url


@pytest.fixture
def oracle_table(oracle_url: str) -> Iterator[str]:
    """A table MFLOW_T_<hex8> (a NUMBER) for the test, dropped afterwards."""
    name = f"MFLOW_T_{uuid.uuid4().hex[:8].upper()}"
    engine = sa.create_engine(oracle_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {name} (a NUMBER)")
    yield name
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {name} PURGE")
    engine.dispose()


def count(url: str, table: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
    finally:
        engine.dispose()


@pytest.mark.oracle
def test_plsql_block_with_dbms_output_and_query(
    oracle_url: str, oracle_table: str, tmp_path: Path
) -> None:
    command = (
        "BEGIN\n"
        f"  INSERT INTO {oracle_table} VALUES (1);\n"
        "  dbms_output.put_line('hello from PL/SQL; really');\n"
        "  dbms_output.put_line('rows: ' || SQL%ROWCOUNT);\n"
        "END;\n"
        "/\n"
        f"INSERT INTO {oracle_table} SELECT level + 1 FROM dual CONNECT BY level <= 2;\n"
        f"SELECT a FROM {oracle_table} ORDER BY a;\n"
    )
    connection = {"name": "ora", "url": oracle_url}
    result, log, _ = run_task(write_project(tmp_path, command, connection), tmp_path)
    assert result.state is TaskState.SUCCESS, result.reason
    assert "hello from PL/SQL; really\nrows: 1\n" in log
    assert "-- 2 rows affected" in log
    assert "a\n-\n1\n2\n3\n-- 3 rows (" in log.lower()  # SQLAlchemy may normalise the case
    assert count(oracle_url, oracle_table) == 3


@pytest.mark.oracle
def test_failing_statement_rolls_back_with_the_ora_code(
    oracle_url: str, oracle_table: str, tmp_path: Path
) -> None:
    command = (
        f"INSERT INTO {oracle_table} VALUES (1);\n"
        "BEGIN dbms_output.put_line('before the error'); END;\n"
        "SELECT * FROM mflow_no_such_table;\n"
    )
    connection = {"name": "ora", "url": oracle_url}
    result, log, _ = run_task(write_project(tmp_path, command, connection), tmp_path)
    assert result.state is TaskState.FAILED
    assert result.reason is not None
    assert result.reason.startswith("statement 3 (line 3) failed: ORA-00942: ")
    assert "before the error" in log
    assert count(oracle_url, oracle_table) == 0


@pytest.mark.oracle
def test_seed_form_runs_live(oracle_url: str, tmp_path: Path) -> None:
    url = make_url(oracle_url)
    service = url.query.get("service_name") or url.database
    connection = {
        "name": "ora",
        "connection_string": f"{url.host}:{url.port or 1521}/{service}",
        "user": url.username,
        "password": url.password,
    }
    result, log, _ = run_task(
        write_project(tmp_path, "SELECT 42 AS x FROM dual", connection), tmp_path
    )
    assert result.state is TaskState.SUCCESS, result.reason
    assert "x\n--\n42\n" in log.lower()
    assert str(url.password) not in log


@pytest.mark.oracle
def test_cancel_stops_the_oracle_call(oracle_url: str, tmp_path: Path) -> None:
    connection = {"name": "ora", "url": oracle_url}
    project = write_project(tmp_path, "BEGIN dbms_session.sleep(30); END;", connection)
    result, _, took = run_task(project, tmp_path, cancel_after=1.0)
    assert took < 4.0
    assert result.state is TaskState.FAILED
    assert result.reason is not None
    assert "ORA-01013" in result.reason


@pytest.mark.oracle
def test_timeout_is_an_oracle_call_timeout(oracle_url: str, tmp_path: Path) -> None:
    connection = {"name": "ora", "url": oracle_url}
    project = write_project(tmp_path, "BEGIN dbms_session.sleep(30); END;", connection)
    result, _, took = run_task(project, tmp_path, timeout=1.0)
    assert took < 4.0
    assert result.state is TaskState.FAILED
