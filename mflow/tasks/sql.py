"""The `sql` and `oracle` task types: SQL or PL/SQL on a named connection, one transaction.

The script (`command`, or the file named by `file`) is split into statements the way SQL*Plus
reads it (`mflow.tasks.sqlscript`) and run in order on one connection, in one transaction:
commit when every statement succeeded, roll back at the first error. The task log shows each
statement, its row count or up to `MAX_ROWS` result rows, the DBMS_OUTPUT lines on Oracle, and
the time it took; the result's reason carries the database's error code and first message line.

Stopping means stopping the statement on the server, not abandoning it: a watchdog thread waits
for `ctx.cancelled` and calls the driver's cancel (psycopg `cancel_safe`, oracledb `cancel`,
sqlite3 `interrupt`), again every second until the task returns, since a cancel that lands
between two statements does nothing. With a task timeout the server enforces it as well
(PostgreSQL `statement_timeout`, Oracle `call_timeout`).

SQLite runs with transactional DDL (SQLAlchemy's recipe: the driver's own transaction handling
is turned off and the transaction begins with an explicit BEGIN), so a failed script leaves
nothing behind there either. (Oracle commits DDL implicitly: there a rollback undoes what
followed the last DDL statement.) No password reaches the log or the reason: error texts go through
`mflow.secrets.Masker` (URL passwords and the connection's literal password).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from mflow.errors import MflowError
from mflow.secrets import Masker
from mflow.tasks.base import TaskResult, TaskType, check_connection, timeout_ms, timeout_s
from mflow.tasks.sqlscript import Statement, split_statements

CONNECT_TIMEOUT_MAX = 3600.0  # seconds: past this a server is not coming

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from mflow.config import Datasource, Datasources, TaskSpec
    from mflow.errors import ConfigError
    from mflow.tasks.base import TaskContext

MAX_ROWS = 100  # result rows written to the task log per query
PREVIEW_LINES = 5  # lines of each statement shown in the task log
MAX_CELL = 80  # characters of one value in a result table
CANCEL_REPEAT = 1.0  # seconds between cancels while the task has not returned
_DML = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "REPLACE", "WITH"})
_INTO = re.compile(r"\bINTO\b", re.IGNORECASE)


class SqlTask(TaskType):
    name = "sql"

    def check(
        self, spec: TaskSpec, datasources: Datasources, datasources_file: str
    ) -> Iterable[ConfigError]:
        return check_connection(spec, datasources, datasources_file, ("oracle", "sql"))

    def describe(self, spec: TaskSpec, ctx: TaskContext) -> str:
        head = f"{spec.type} on {spec.fields.get('db')}"
        if "file" in spec.fields:
            return f"{head}: file {spec.path(spec.fields['file'])}"
        lines = [ln.strip() for ln in str(spec.fields.get("command", "")).splitlines()]
        lines = [ln for ln in lines if ln]
        first = lines[0] if lines else ""
        if len(first) <= 80 and len(lines) <= 1:
            return f"{head}: {first}"
        # One line for the log header and the plan; where the whole statement is, for people.
        where = f"{spec.source.file} {spec.source.json_path}.command".strip()
        return f"{head}: {first[:80].rstrip()}… (the whole of it: {where})"

    def run(self, spec: TaskSpec, ctx: TaskContext, log: TextIO) -> TaskResult:
        datasource = ctx.project.datasources[spec.fields["db"]]
        if "file" in spec.fields:
            path = spec.path(spec.fields["file"])
            try:
                script = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                return TaskResult.failure(f"cannot read the script {path}: {reason}")
            origin = f"file {path}"
        else:
            script, origin = spec.fields["command"], "command"
        statements = split_statements(script)
        log.write(f"{len(statements)} statement(s) from the {origin}\n")
        if not statements:
            return TaskResult.success()
        try:
            engine = _engine(datasource, ctx)
        except MflowError as exc:  # an unset ${VAR}, a wrong passkey
            return TaskResult.failure(str(exc))
        except Exception as exc:  # a malformed URL, a driver that is not installed
            return _setup_failure(datasource, exc, log)
        try:
            return _Session(engine, datasource, ctx, log).run(statements)
        finally:
            engine.dispose()


def _engine(datasource: Datasource, ctx: TaskContext) -> Engine:
    from sqlalchemy.pool import NullPool

    from mflow.connections import backend_name, create_engine, own_sqlite_transactions

    backend = backend_name(datasource)
    connect_args: dict[str, Any] = {}
    connect = timeout_s(ctx.timeout, CONNECT_TIMEOUT_MAX)
    if connect is not None and backend == "postgresql":
        connect_args["connect_timeout"] = max(2, math.ceil(connect))
    elif connect is not None and backend == "oracle":
        connect_args["tcp_connect_timeout"] = connect
    engine = create_engine(datasource, poolclass=NullPool, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        own_sqlite_transactions(engine)
    return engine


def _setup_failure(datasource: Datasource, exc: Exception, log: TextIO) -> TaskResult:
    from mflow.connections import DRIVERS
    from mflow.secrets import reveal_password

    mask = Masker(reveal_password(datasource.fields, what=datasource.name))
    reason = f"connection '{datasource.name}': {mask(_first(exc))}"
    if isinstance(exc, ImportError) and exc.name in DRIVERS:
        reason += f" ({DRIVERS[exc.name]})"
    log.write(f"cannot set up connection '{datasource.name}': {mask(str(exc))}\n")
    return TaskResult.failure(reason)


class _Failed(Exception):
    """A statement failed (or was stopped): the reason and what goes to the log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class _Session:
    """One run of a script on one connection."""

    def __init__(
        self, engine: Engine, datasource: Datasource, ctx: TaskContext, log: TextIO
    ) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.name = datasource.name
        self.ctx = ctx
        self.log = log
        self.mask = Masker(engine.url.password)

    def run(self, statements: Sequence[Statement]) -> TaskResult:
        import sqlalchemy.exc

        started = time.monotonic()
        try:
            conn = self.engine.connect()
        except sqlalchemy.exc.SQLAlchemyError as exc:
            first, full = self._error(exc)
            self.log.write(f"cannot connect to '{self.name}' ({self.dialect}): {full}\n")
            return TaskResult.failure(f"cannot connect to '{self.name}': {first}")
        with conn:
            raw = conn.connection.driver_connection
            self.log.write(f"connected to '{self.name}' ({self.dialect}) in {_secs(started)}\n")
            watchdog = _Watchdog(self.ctx.cancelled, _canceller(self.dialect, raw))
            try:
                try:
                    self._prepare(conn, raw)
                    for number, statement in enumerate(statements, 1):
                        self._execute(conn, raw, statement, number, len(statements))
                finally:
                    watchdog.stop()
            except _Failed as failed:
                self.log.write(failed.detail)
                self._rollback(conn)
                return TaskResult.failure(failed.reason)
            try:
                conn.commit()
            except sqlalchemy.exc.SQLAlchemyError as exc:
                first, full = self._error(exc)
                self.log.write(f"ERROR at commit: {full}\n")
                self._rollback(conn)
                return TaskResult.failure(f"commit failed: {first}")
        self.log.write(f"committed ({len(statements)} statement(s), {_secs(started)})\n")
        return TaskResult.success()

    def _prepare(self, conn: Connection, raw: Any) -> None:
        timeout = self.ctx.timeout
        try:
            conn.begin()
            limit = timeout_ms(timeout)
            if self.dialect == "postgresql" and limit is not None:
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {limit}")
            elif self.dialect == "oracle":
                if limit is not None:
                    raw.call_timeout = timeout_ms(timeout, 2**32 - 1)  # a ub4 in milliseconds
                conn.exec_driver_sql("BEGIN dbms_output.enable(NULL); END;")
        except Exception as exc:
            first, full = self._error(exc)
            raise _Failed(f"cannot prepare the session: {first}", f"ERROR: {full}\n") from None

    def _execute(
        self, conn: Connection, raw: Any, statement: Statement, number: int, total: int
    ) -> None:
        where = f"statement {number} (line {statement.line})"
        if self.ctx.cancelled.is_set():
            raise _Failed(f"cancelled before {where}", f"cancelled before {where}\n")
        self.log.write(f"-- [{number}/{total}] line {statement.line}\n{_preview(statement.text)}\n")
        started = time.monotonic()
        # psycopg fetches a whole result at once unless asked for a server-side cursor, which
        # only a plain query can have (DECLARE … CURSOR FOR SELECT, and not SELECT … INTO).
        stream = (
            self.dialect == "postgresql"
            and statement.text[:6].upper() == "SELECT"
            and not _INTO.search(statement.text)
        )
        try:
            result = conn.execution_options(
                stream_results=stream, max_row_buffer=MAX_ROWS + 1
            ).exec_driver_sql(statement.text)
            try:
                summary = self._result(result, statement)
            finally:
                result.close()
        except Exception as exc:
            self._dbms_output(raw)
            first, full = self._error(exc)
            if self.ctx.cancelled.is_set():
                reason = f"cancelled: {where} was stopped on the server ({first})"
            else:
                reason = f"{where} failed: {first}"
            raise _Failed(reason, f"ERROR in {where} after {_secs(started)}:\n{full}\n") from None
        self._dbms_output(raw)
        self.log.write(f"-- {summary} ({_secs(started)})\n")

    def _result(self, result: Any, statement: Statement) -> str:
        if result.returns_rows:
            columns = [str(c) for c in result.keys()]
            rows = result.fetchmany(MAX_ROWS + 1)
            more = len(rows) > MAX_ROWS
            self.log.write(_table(columns, rows[:MAX_ROWS]))
            if more:
                self.log.write("... (more rows not shown)\n")
                return f"more than {MAX_ROWS} rows"
            return _count(len(rows), "row")
        first_word = statement.text.split(None, 1)[0].upper()
        if first_word in _DML and result.rowcount >= 0:
            return f"{_count(result.rowcount, 'row')} affected"
        return "done"

    def _dbms_output(self, raw: Any) -> None:
        if self.dialect != "oracle":
            return
        try:
            lines = _read_dbms_output(raw)
        except Exception as exc:  # the session may be gone after a cancel
            self.log.write(f"(cannot read DBMS_OUTPUT: {self.mask(_first(exc))})\n")
            return
        for line in lines:
            self.log.write(f"{line}\n")

    def _rollback(self, conn: Connection) -> None:
        try:
            conn.rollback()
            self.log.write("rolled back\n")
        except Exception as exc:  # the connection broke: the server rolls back on its own
            self.log.write(f"rollback failed: {self.mask(_first(exc))}\n")

    def _error(self, exc: BaseException) -> tuple[str, str]:
        """(code and first line, full text) of a database error, passwords masked."""
        first, full = _describe(getattr(exc, "orig", None) or exc)
        return self.mask(first), self.mask(full)


def _describe(error: BaseException) -> tuple[str, str]:
    text = str(error).strip() or type(error).__name__
    first = text.splitlines()[0]
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate:  # psycopg
        diag = error.diag  # type: ignore[attr-defined]
        extra = [
            f"{label}: {value}"
            for label, value in (
                ("DETAIL", diag.message_detail),
                ("HINT", diag.message_hint),
                ("CONTEXT", diag.context),
            )
            if value and value not in text
        ]
        return f"SQLSTATE {sqlstate}: {diag.message_primary or first}", "\n".join([text, *extra])
    errorname = getattr(error, "sqlite_errorname", None)
    if errorname:  # sqlite3
        return f"{errorname}: {first}", text
    if re.match(r"[A-Z]{3}-\d{4,5}\b", first):
        return first, text  # oracledb: "ORA-00942: table or view does not exist"
    code = getattr(getattr(error, "args", [None])[0], "full_code", None)
    if code and not first.startswith(code):
        first = f"{code}: {first}"
    return first, text


def _first(exc: BaseException) -> str:
    return _describe(getattr(exc, "orig", None) or exc)[0]


def _canceller(dialect: str, raw: Any) -> Callable[[], None] | None:
    """What stops the running statement on the server, callable from another thread."""
    if dialect == "postgresql":
        cancel_safe = getattr(raw, "cancel_safe", None)
        if cancel_safe is not None:
            return lambda: cancel_safe(timeout=5.0)
        return getattr(raw, "cancel", None)
    if dialect == "oracle":
        return raw.cancel  # type: ignore[no-any-return]
    if dialect == "sqlite":
        return raw.interrupt  # type: ignore[no-any-return]
    return getattr(raw, "cancel", None)


class _Watchdog:
    """Calls `cancel` once `cancelled` is set, and every second after, until stopped."""

    def __init__(self, cancelled: threading.Event, cancel: Callable[[], None] | None) -> None:
        self.cancelled = cancelled
        self.cancel = cancel
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        if cancel is not None:
            self.thread = threading.Thread(target=self._watch, name="mflow-sql-cancel")
            self.thread.daemon = True
            self.thread.start()

    def _watch(self) -> None:
        while not self.cancelled.wait(0.1):
            if self.done.is_set():
                return
        while not self.done.is_set():
            try:
                self.cancel()  # type: ignore[misc]
            except Exception:  # nothing running, connection closing: nothing to stop
                pass
            self.done.wait(CANCEL_REPEAT)

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join(timeout=6.0)


def _read_dbms_output(raw: Any, chunk: int = 100) -> list[str]:
    """Every pending DBMS_OUTPUT line (dbms_output.get_lines, `chunk` lines a round trip)."""
    cursor = raw.cursor()
    try:
        lines_var = cursor.arrayvar(str, chunk, 32767)
        count_var = cursor.var(int)
        out: list[str] = []
        while True:
            count_var.setvalue(0, chunk)
            cursor.callproc("dbms_output.get_lines", (lines_var, count_var))
            count = count_var.getvalue()
            out.extend(line or "" for line in lines_var.getvalue()[:count])
            if count < chunk:
                return out
    finally:
        cursor.close()


def _preview(text: str) -> str:
    lines = text.splitlines()
    shown = [ln if len(ln) <= 200 else ln[:200] + "…" for ln in lines[:PREVIEW_LINES]]
    if len(lines) > PREVIEW_LINES:
        shown.append(f"... ({len(lines) - PREVIEW_LINES} more lines)")
    return "\n".join(shown)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        text = "0x" + bytes(value[:40]).hex()
    elif hasattr(value, "isoformat") and not isinstance(value, str):
        text = value.isoformat(sep=" ") if hasattr(value, "hour") else value.isoformat()
    else:
        text = str(value)
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _table(columns: list[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain aligned table: header, rule, rows; numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(columns))
    ]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return " | ".join(parts).rstrip() + "\n"

    out = [line(columns), "-+-".join("-" * w for w in widths) + "\n"]
    out += [line(row) for row in cells]
    return "".join(out)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _secs(started: float) -> str:
    return f"{time.monotonic() - started:.3f} s"
