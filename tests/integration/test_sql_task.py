"""The sql / oracle task type on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from support import run_project

from mflow.config import Project
from mflow.project import load_project
from mflow.states import TaskState
from mflow.tasks.base import TaskContext, TaskResult
from mflow.tasks.sql import MAX_ROWS, SqlTask


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """postgres_url with an application_name of its own, to find the task's sessions."""
    name = f"mflow-test-{uuid.uuid4().hex[:8]}"
    url = make_url(postgres_url).update_query_dict({"application_name": name})
    return url.render_as_string(hide_password=False)


def write_project(
    tmp_path: Path, tasks: list[dict[str, Any]], connections: list[dict[str, Any]]
) -> Project:
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": tasks}))
    (tmp_path / "oracle.json").write_text(json.dumps({"connections": connections}))
    return load_project(None, tmp_path / "tasks.json", tmp_path / "oracle.json")


def sql_project(tmp_path: Path, url: str, **fields: Any) -> Project:
    task = {"id": "q", "type": "sql", "db": "db", **fields}
    return write_project(tmp_path, [task], [{"name": "db", "url": url}])


def run_task(
    project: Project,
    tmp_path: Path,
    task_id: str = "q",
    timeout: float | None = None,
    cancel: threading.Event | None = None,
) -> tuple[TaskResult, str, float]:
    """Run the task in-process as the runner would; (result, task log, seconds taken)."""
    log_path = tmp_path / f"{task_id}.log"
    ctx = TaskContext(
        run_id=1,
        task_id=task_id,
        attempt=1,
        log_path=log_path,
        env=dict(os.environ),
        project=project,
        timeout=timeout,
        cancelled=cancel or threading.Event(),
    )
    started = time.monotonic()
    with log_path.open("a", buffering=1, encoding="utf-8") as log:
        result = SqlTask().run(project.dag.tasks[task_id], ctx, log)
    return result, log_path.read_text(), time.monotonic() - started


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def table_exists(url: str, name: str) -> bool:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        return sa.inspect(engine).has_table(name)
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- success


def test_ddl_dml_and_query_in_one_command_commit(db_url: str, tmp_path: Path) -> None:
    command = (
        "CREATE TABLE people (id int, name varchar(20));\n"
        "INSERT INTO people VALUES (1, 'ann'), (2, 'bob'), (3, NULL);\n"
        "UPDATE people SET name = 'bo' WHERE id = 2;\n"
        "SELECT id, name FROM people ORDER BY id;"
    )
    result, log, _ = run_task(sql_project(tmp_path, db_url, command=command), tmp_path)
    assert result.state is TaskState.SUCCESS, result.reason
    assert query(db_url, "SELECT id, name FROM people ORDER BY id") == [
        (1, "ann"),
        (2, "bo"),
        (3, None),
    ]
    assert "-- [2/4] line 2\nINSERT INTO people VALUES (1, 'ann'), (2, 'bob'), (3, NULL)\n" in log
    assert "-- 3 rows affected (" in log
    assert "-- 1 row affected (" in log
    assert "id | name\n---+-----\n 1 | ann\n 2 | bo\n 3 | NULL\n-- 3 rows (" in log
    assert "committed (4 statement(s)" in log


def test_script_file_with_comments_and_quoted_semicolons(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "load.sql").write_text(
        "-- a script; with a comment\n"
        "CREATE TABLE notes (id int, body varchar(50));\n"
        "/* two rows; one statement */\n"
        "INSERT INTO notes VALUES (1, 'a;b'), (2, 'it''s; here');\n"
        'INSERT INTO notes SELECT 3, "body" FROM notes WHERE "id" = 1;  -- names; not strings\n'
        "DELETE FROM notes WHERE id = 3\n"
        "/\n"
        "SELECT body FROM notes ORDER BY id;\n"
    )
    project = sql_project(tmp_path, db_url, file="sql/load.sql")
    result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.SUCCESS, result.reason
    assert query(db_url, "SELECT body FROM notes ORDER BY id") == [("a;b",), ("it's; here",)]
    assert f"5 statement(s) from the file {tmp_path / 'sql' / 'load.sql'}" in log
    assert "body\n----------\na;b\nit's; here\n" in log


def test_rows_beyond_the_limit_are_not_shown(db_url: str, tmp_path: Path) -> None:
    command = (
        "CREATE TABLE n (i int);\n"
        "INSERT INTO n WITH RECURSIVE c(i) AS"
        " (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 150) SELECT i FROM c;\n"
        "SELECT i FROM n ORDER BY i;\n"
        f"SELECT i FROM n WHERE i <= {MAX_ROWS} ORDER BY i"
    )
    result, log, _ = run_task(sql_project(tmp_path, db_url, command=command), tmp_path)
    assert result.state is TaskState.SUCCESS, result.reason
    assert "-- 150 rows affected" in log
    big, exact = log.split("-- [4/4]")
    shown = [ln for ln in big.split("-- [3/4]")[1].splitlines() if ln.strip().isdigit()]
    assert shown == [str(i).rjust(3) for i in range(1, MAX_ROWS + 1)]
    assert "... (more rows not shown)\n-- more than 100 rows (" in big
    assert "more rows not shown" not in exact
    assert f"-- {MAX_ROWS} rows (" in exact


def test_empty_script_succeeds_without_connecting(tmp_path: Path) -> None:
    project = sql_project(tmp_path, "sqlite:////nonexistent/dir/x.db", command="-- nothing;\n;")
    result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.SUCCESS
    assert "0 statement(s)" in log


def test_sqlite_trigger_defined_in_the_script_works(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    command = (
        "CREATE TABLE t (a int); CREATE TABLE c (n int); INSERT INTO c VALUES (0);\n"
        "CREATE TRIGGER count_t AFTER INSERT ON t BEGIN UPDATE c SET n = n + 1; END;\n"
        "INSERT INTO t VALUES (1), (2);"
    )
    result, _, _ = run_task(sql_project(tmp_path, url, command=command), tmp_path)
    assert result.state is TaskState.SUCCESS, result.reason
    assert query(url, "SELECT n FROM c") == [(2,)]


@pytest.mark.postgres
def test_postgres_do_block_and_dollar_quoted_function(postgres_url: str, tmp_path: Path) -> None:
    command = (
        "CREATE TABLE t (a int);\n"
        "DO $$ BEGIN INSERT INTO t VALUES (41); END $$;\n"
        "CREATE FUNCTION plus_one(x int) RETURNS int LANGUAGE plpgsql AS $body$\n"
        "BEGIN\n  RETURN x + 1;\nEND;\n$body$;\n"
        "SELECT plus_one(a) AS answer FROM t;"
    )
    result, log, _ = run_task(sql_project(tmp_path, postgres_url, command=command), tmp_path)
    assert result.state is TaskState.SUCCESS, result.reason
    assert "answer\n------\n    42\n" in log


def test_oracle_type_behaves_like_sql(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    task = {"id": "q", "type": "oracle", "db": "db", "command": "CREATE TABLE t (a int)"}
    project = write_project(tmp_path, [task], [{"name": "db", "url": url}])
    result, _, _ = run_task(project, tmp_path)
    assert result.state is TaskState.SUCCESS, result.reason
    assert table_exists(url, "t")


# --------------------------------------------------------------------------- failure


def test_error_rolls_back_everything_the_task_did(db_url: str, tmp_path: Path) -> None:
    query_commit(db_url, "CREATE TABLE kept (a int)")
    command = (
        "CREATE TABLE made (a int);\n"
        "INSERT INTO made VALUES (1);\n"
        "INSERT INTO kept VALUES (1);\n"
        "SELECT * FROM no_such_table;\n"
        "INSERT INTO kept VALUES (2);"
    )
    result, log, _ = run_task(sql_project(tmp_path, db_url, command=command), tmp_path)
    assert result.state is TaskState.FAILED
    assert not table_exists(db_url, "made")  # transactional DDL on both
    assert query(db_url, "SELECT count(*) FROM kept") == [(0,)]
    assert "rolled back" in log
    assert "-- [5/5]" not in log


def query_commit(url: str, sql: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def test_sqlite_error_reason_carries_the_error_name_and_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    project = sql_project(tmp_path, url, command="SELECT 1;\nSELECT * FROM no_such_table;")
    result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.FAILED
    assert (
        result.reason == "statement 2 (line 2) failed: SQLITE_ERROR: no such table: no_such_table"
    )
    assert "ERROR in statement 2 (line 2) after" in log
    assert "no such table: no_such_table" in log


@pytest.mark.postgres
def test_postgres_error_reason_carries_sqlstate_and_log_the_full_error(
    postgres_url: str, tmp_path: Path
) -> None:
    command = (
        "CREATE TABLE t (a int PRIMARY KEY);\nINSERT INTO t VALUES (1);\nINSERT INTO t VALUES (1);"
    )
    result, log, _ = run_task(sql_project(tmp_path, postgres_url, command=command), tmp_path)
    assert result.state is TaskState.FAILED
    assert result.reason == (
        "statement 3 (line 3) failed: SQLSTATE 23505: "
        'duplicate key value violates unique constraint "t_pkey"'
    )
    assert "DETAIL:  Key (a)=(1) already exists." in log or "Key (a)=(1) already exists" in log


def test_missing_script_file_fails(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    result, _, _ = run_task(sql_project(tmp_path, url, file="absent.sql"), tmp_path)
    assert result.state is TaskState.FAILED
    assert (
        result.reason
        == f"cannot read the script {tmp_path / 'absent.sql'}: No such file or directory"
    )


def test_unset_password_variable_fails_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MFLOW_TEST_UNSET_PW", raising=False)
    connection = {
        "name": "db",
        "url": f"sqlite:///{tmp_path / 'data.db'}",
        "password": "${MFLOW_TEST_UNSET_PW}",
    }
    project = write_project(
        tmp_path, [{"id": "q", "type": "sql", "db": "db", "command": "SELECT 1"}], [connection]
    )
    result, _, _ = run_task(project, tmp_path)
    assert result.state is TaskState.FAILED
    assert result.reason is not None
    assert "MFLOW_TEST_UNSET_PW is not set" in result.reason


# --------------------------------------------------------------------------- secrets


SECRET = "Pw-8fK2-never-shown"


@pytest.mark.postgres
def test_password_is_in_neither_log_nor_reason(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test server trusts local connections, so the password is sent but not checked;
    # the failing statement makes the server echo it back in the error.
    monkeypatch.setenv("MFLOW_TEST_PW", SECRET)
    connection = {"name": "db", "url": postgres_url, "password": "${MFLOW_TEST_PW}"}
    command = f'SELECT 1;\nSELECT * FROM "{SECRET}"'
    project = write_project(
        tmp_path, [{"id": "q", "type": "sql", "db": "db", "command": command}], [connection]
    )
    result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.FAILED
    assert result.reason is not None
    assert 'relation "***" does not exist' in result.reason
    assert SECRET not in result.reason
    assert SECRET not in log.replace(f'SELECT * FROM "{SECRET}"', "")  # the script is the user's


def test_connection_failure_does_not_show_the_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://mflow:{SECRET}@127.0.0.1:1/nowhere"
    result, log, _ = run_task(sql_project(tmp_path, url, command="SELECT 1"), tmp_path)
    assert result.state is TaskState.FAILED
    assert result.reason is not None
    assert result.reason.startswith("cannot connect to 'db': ")
    assert SECRET not in result.reason
    assert SECRET not in log


def test_describe_shows_the_first_line_and_where_the_rest_is_or_the_file(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://mflow:{SECRET}@db.example/x"
    tasks = [
        {"id": "one", "type": "sql", "db": "db", "command": "SELECT 1"},
        {"id": "many", "type": "oracle", "db": "db", "command": "\n  DELETE FROM t;\nCOMMIT;"},
        {"id": "file", "type": "sql", "db": "db", "file": "x.sql"},
    ]
    project = write_project(tmp_path, tasks, [{"name": "db", "url": url}])
    ctx = TaskContext(1, "one", 1, tmp_path / "x.log", {}, project)
    shown = [SqlTask().describe(project.dag.tasks[t], ctx) for t in ("one", "many", "file")]
    assert shown == [
        "sql on db: SELECT 1",
        "oracle on db: DELETE FROM t;… "
        f"(the whole of it: {tmp_path / 'tasks.json'} $.tasks[1].command)",
        f"sql on db: file {tmp_path / 'x.sql'}",
    ]


# --------------------------------------------------------------------------- stopping


def pg_sessions(url: str, application_name: str) -> list[tuple[Any, ...]]:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conninfo = conninfo.split("?")[0]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute(
            "SELECT state, query FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchall()


def wait_for_active_session(url: str, name: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        # A query runs through a server-side cursor: the session shows FETCH, not the query.
        sessions = pg_sessions(url, name)
        if any(state == "active" and q.startswith("FETCH") for state, q in sessions):
            return
        time.sleep(0.05)
    raise AssertionError(f"no session of {name} fetching from a query")


@pytest.fixture
def app_name(pg_url: str) -> str:
    return str(make_url(pg_url).query["application_name"])


@pytest.mark.postgres
def test_cancel_stops_the_postgres_statement_on_the_server(
    pg_url: str, app_name: str, tmp_path: Path
) -> None:
    project = sql_project(tmp_path, pg_url, command="SELECT pg_sleep(30)")
    cancel = threading.Event()
    outcome: list[tuple[TaskResult, str, float]] = []
    worker = threading.Thread(
        target=lambda: outcome.append(run_task(project, tmp_path, cancel=cancel))
    )
    worker.start()
    wait_for_active_session(pg_url, app_name)
    cancelled_at = time.monotonic()
    cancel.set()
    worker.join(timeout=10)
    returned_after = time.monotonic() - cancelled_at
    result, _, _ = outcome[0]
    assert returned_after < 2.0
    assert result.state is TaskState.FAILED
    assert result.reason is not None
    assert result.reason.startswith("cancelled: statement 1 (line 1) was stopped on the server")
    assert "57014" in result.reason
    assert pg_sessions(pg_url, app_name) == []


@pytest.mark.postgres
def test_timeout_stops_the_postgres_statement_on_the_server(
    pg_url: str, app_name: str, tmp_path: Path
) -> None:
    project = sql_project(tmp_path, pg_url, command="SELECT 1;\nSELECT pg_sleep(30)")
    result, _, took = run_task(project, tmp_path, timeout=1.0)
    assert took < 3.0
    assert result.state is TaskState.FAILED
    assert result.reason == (
        "statement 2 (line 2) failed: SQLSTATE 57014: canceling statement due to statement timeout"
    )
    assert pg_sessions(pg_url, app_name) == []


def test_cancel_interrupts_a_running_sqlite_statement(tmp_path: Path) -> None:
    endless = (
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT count(*) FROM c"
    )
    project = sql_project(tmp_path, f"sqlite:///{tmp_path / 'data.db'}", command=endless)
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    result, _, took = run_task(project, tmp_path, cancel=cancel)
    assert took < 2.0  # cancelled after 1 s: it stopped at once
    assert result.state is TaskState.FAILED
    assert result.reason == (
        "cancelled: statement 1 (line 1) was stopped on the server (SQLITE_INTERRUPT: interrupted)"
    )


def test_cancel_before_a_statement_starts_runs_nothing_more(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data.db'}"
    cancel = threading.Event()
    cancel.set()
    result, _, _ = run_task(
        sql_project(tmp_path, url, command="CREATE TABLE t (a int)"), tmp_path, cancel=cancel
    )
    assert result.state is TaskState.FAILED
    assert result.reason == "cancelled before statement 1 (line 1)"
    assert not table_exists(url, "t")


# --------------------------------------------------------------------------- in a DAG run


def test_sql_tasks_in_a_dag_run_write_the_task_log(tmp_path: Path) -> None:
    tasks = [
        {"id": "create", "type": "sql", "db": "db", "command": "CREATE TABLE t (a int)"},
        {
            "id": "fill",
            "type": "sql",
            "db": "db",
            "depends": ["create"],
            "command": "INSERT INTO t VALUES (7); SELECT a FROM t",
        },
        {
            "id": "bad",
            "type": "sql",
            "db": "db",
            "depends": ["fill"],
            "command": "SELECT nope FROM t",
        },
    ]
    project = write_project(tmp_path, tasks, [{"name": "db", "url": "sqlite:///data.db"}])
    recorder = run_project(project, tmp_path)
    assert recorder.ended_once("create").state is TaskState.SUCCESS
    fill = recorder.ended_once("fill")
    assert fill.state is TaskState.SUCCESS
    log = Path(fill.log_path or "").read_text()
    assert "sql on db: INSERT INTO t VALUES (7); SELECT a FROM t" in log  # the attempt header
    assert "a\n-\n7\n-- 1 row (" in log
    bad = recorder.ended_once("bad")
    assert bad.state is TaskState.FAILED
    assert bad.reason == "statement 1 (line 1) failed: SQLITE_ERROR: no such column: nope"


@pytest.mark.postgres
def test_task_timeout_in_a_dag_run_stops_the_postgres_statement(
    pg_url: str, app_name: str, tmp_path: Path
) -> None:
    tasks = [
        {"id": "slow", "type": "sql", "db": "db", "timeout": 1, "command": "SELECT pg_sleep(30)"}
    ]
    project = write_project(tmp_path, tasks, [{"name": "db", "url": pg_url}])
    started = time.monotonic()
    recorder = run_project(project, tmp_path)
    assert time.monotonic() - started < 4.0
    slow = recorder.ended_once("slow")
    assert slow.state is TaskState.FAILED
    assert slow.reason == "timed out after 1.00s"
    assert pg_sessions(pg_url, app_name) == []


def test_sqlite_task_timeout_in_a_dag_run_is_reported_as_a_timeout(tmp_path: Path) -> None:
    endless = (
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c) SELECT count(*) FROM c"
    )
    tasks = [{"id": "slow", "type": "sql", "db": "db", "timeout": 0.5, "command": endless}]
    project = write_project(tmp_path, tasks, [{"name": "db", "url": "sqlite:///data.db"}])
    slow = run_project(project, tmp_path).ended_once("slow")
    assert slow.state is TaskState.FAILED
    assert slow.reason == "timed out after 0.50s"
    assert "interrupted" in Path(slow.log_path or "").read_text()


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = {t.name for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        leaked = {t.name for t in threading.enumerate()} - before
        if not any(name == "mflow-sql-cancel" for name in leaked):
            return
        time.sleep(0.05)
    raise AssertionError("a cancel watchdog thread outlived its task")


@pytest.mark.parametrize("timeout", [math.inf, 30 * 86400.0], ids=["infinite", "30d"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_timeout_without_a_limit_or_longer_than_the_server_takes_still_runs(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str, timeout: float
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'db.sqlite'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    result, log, _ = run_task(
        sql_project(tmp_path, url, command="SELECT 1"), tmp_path, timeout=timeout
    )
    assert result.state is TaskState.SUCCESS, log
