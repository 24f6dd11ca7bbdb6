"""gsql_batch / gsql_stream against a stub TigerGraph REST++ server and a fake gsql client."""

from __future__ import annotations

import json
import math
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import run_project
from tg_stub import TigerGraphStub, running

from mflow.config import Project
from mflow.project import load_project
from mflow.states import TaskState
from mflow.tasks.base import TaskContext, TaskResult
from mflow.tasks.tigergraph import STREAM_REFUSED, GsqlBatchTask, GsqlStreamTask


def write_project(
    tmp_path: Path, tasks: list[dict[str, Any]], connections: list[dict[str, Any]] | None = None
) -> Project:
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": tasks}))
    datasources = None
    if connections is not None:
        datasources = tmp_path / "oracle.json"
        datasources.write_text(json.dumps({"connections": connections}))
    return load_project(None, tmp_path / "tasks.json", datasources)


def tg_connection(stub: TigerGraphStub, **fields: Any) -> dict[str, Any]:
    conn = {"name": "tg", "kind": "tigergraph", "host": stub.host, "port": stub.port}
    conn.update(fields)
    return {k: v for k, v in conn.items() if v is not None}


def load_task(**fields: Any) -> dict[str, Any]:
    return {
        "id": "load",
        "type": "gsql_batch",
        "graph": "social",
        "job_name": "load_people",
        "db": "tg",
        **fields,
    }


def run_task(
    project: Project,
    tmp_path: Path,
    task_id: str = "load",
    cancel_after: float | None = None,
    timeout: float | None = None,
) -> tuple[TaskResult, str, float]:
    """Run the task in-process as the runner would; (result, task log, seconds taken)."""
    spec = project.dag.tasks[task_id]
    log_path = tmp_path / f"{task_id}.log"
    ctx = TaskContext(
        run_id=1,
        task_id=task_id,
        attempt=1,
        log_path=log_path,
        env=dict(os.environ),
        project=project,
        timeout=timeout if timeout is not None else spec.timeout,
    )
    if cancel_after == 0:
        ctx.cancelled.set()
    elif cancel_after is not None:
        threading.Timer(cancel_after, ctx.cancelled.set).start()
    task_type = GsqlStreamTask() if spec.type == "gsql_stream" else GsqlBatchTask()
    started = time.monotonic()
    with log_path.open("a", buffering=1, encoding="utf-8") as log:
        result = task_type.run(spec, ctx, log)
    return result, log_path.read_text(), time.monotonic() - started


def assert_no_secrets(stub: TigerGraphStub, *texts: str | None) -> None:
    for text in texts:
        assert stub.secret not in (text or "")
        assert stub.token not in (text or "")


# --------------------------------------------------------------------------- REST++


def test_token_from_secret_then_job_request_with_bearer_token(tmp_path: Path) -> None:
    with running() as stub:
        project = write_project(tmp_path, [load_task()], [tg_connection(stub, secret=stub.secret)])
        result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.SUCCESS, result.reason
    assert stub.paths() == ["/requesttoken", "/ddl/social"]
    token_request, job_request = stub.requests
    assert token_request.method == "GET"
    assert token_request.query == {"secret": stub.secret}
    assert job_request.method == "POST"
    assert job_request.query == {"tag": "load_people"}
    assert job_request.headers["authorization"] == f"Bearer {stub.token}"
    assert job_request.body == b""
    assert_no_secrets(stub, log, result.reason)


def test_token_given_directly_skips_requesttoken(tmp_path: Path) -> None:
    with running() as stub:
        project = write_project(tmp_path, [load_task()], [tg_connection(stub, token=stub.token)])
        result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.SUCCESS, result.reason
    assert stub.paths() == ["/ddl/social"]
    assert stub.requests[0].headers["authorization"] == f"Bearer {stub.token}"
    assert_no_secrets(stub, log)


def test_secret_and_host_may_come_from_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running() as stub:
        monkeypatch.setenv("TG_SECRET", stub.secret)
        monkeypatch.setenv("TG_HOST", stub.host)
        conn = tg_connection(stub, secret="${TG_SECRET}", host="${TG_HOST}")
        project = write_project(tmp_path, [load_task()], [conn])
        result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.SUCCESS, result.reason
    assert stub.requests[0].query == {"secret": stub.secret}
    assert_no_secrets(stub, log)


def test_files_are_posted_one_request_per_file_variable_with_filename(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("1,ann\n2,bob\n3,cy\n")
    (tmp_path / "more.csv").write_text("4,dee\n")
    files = {"f1": "people.csv", "f2": str(tmp_path / "more.csv")}
    with running() as stub:
        project = write_project(
            tmp_path, [load_task(files=files)], [tg_connection(stub, secret=stub.secret)]
        )
        result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.SUCCESS, result.reason
    posts = [r for r in stub.requests if r.method == "POST"]
    assert [r.query for r in posts] == [
        {"tag": "load_people", "filename": "f1"},
        {"tag": "load_people", "filename": "f2"},
    ]
    assert posts[0].body == b"1,ann\n2,bob\n3,cy\n"
    assert posts[1].body == b"4,dee\n"
    assert posts[0].headers["content-length"] == str(len(posts[0].body))
    assert "f1: 3 valid lines, 0 rejected" in log
    assert "f2: 1 valid lines, 0 rejected" in log
    assert "vertex person: 3 valid objects" in log
    assert "WARNING" not in log
    assert_no_secrets(stub, log)


def test_large_file_is_streamed_completely(tmp_path: Path) -> None:
    data = b"".join(b"%d,name%d\n" % (i, i) for i in range(200_000))  # ~3 MB, many chunks
    (tmp_path / "big.csv").write_bytes(data)
    with running() as stub:
        project = write_project(
            tmp_path, [load_task(files={"f1": "big.csv"})], [tg_connection(stub, token=stub.token)]
        )
        result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.SUCCESS, result.reason
    assert stub.requests[0].body == data
    assert "f1: 200000 valid lines" in log


def test_some_rejected_lines_succeed_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("1,ann\nBAD line\n2,bob\n")
    with running() as stub:
        project = write_project(
            tmp_path,
            [load_task(files={"f1": "people.csv"})],
            [tg_connection(stub, token=stub.token)],
        )
        result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.SUCCESS, result.reason
    assert "f1: 2 valid lines, 1 rejected (rejectLine 1)" in log
    assert "WARNING: f1: 1 of 3 lines rejected" in log


def test_every_line_rejected_fails_the_task(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("BAD 1\nBAD 2\n")
    with running() as stub:
        project = write_project(
            tmp_path,
            [load_task(files={"f1": "people.csv"})],
            [tg_connection(stub, token=stub.token)],
        )
        result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.FAILED
    assert (
        result.reason == "every line of f1 was rejected (2 lines: rejectLine 2); nothing was loaded"
    )
    assert "WARNING: f1: 2 of 2 lines rejected" in log


def test_wrong_secret_fails_with_tigergraphs_message_and_no_secret(tmp_path: Path) -> None:
    wrong = "wrong-secret-Pq93"
    with running() as stub:
        project = write_project(tmp_path, [load_task()], [tg_connection(stub, secret=wrong)])
        result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.FAILED
    assert result.reason == "TigerGraph refused the token request: The secret *** is not valid."
    assert stub.paths() == ["/requesttoken"]
    assert wrong not in log
    assert wrong not in (result.reason or "")


def test_wrong_token_fails_with_http_status_and_masked_token(tmp_path: Path) -> None:
    wrong = "wrong-token-Xy77"
    with running() as stub:
        project = write_project(tmp_path, [load_task()], [tg_connection(stub, token=wrong)])
        result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.FAILED
    assert result.reason is not None
    assert "HTTP 401" in result.reason
    assert "Access Denied because the input token = '***' is invalid" in result.reason
    assert wrong not in log
    assert wrong not in result.reason


def test_job_error_fails_with_the_message(tmp_path: Path) -> None:
    with running() as stub:
        project = write_project(
            tmp_path,
            [load_task(job_name="load_nothing")],
            [tg_connection(stub, secret=stub.secret)],
        )
        result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.FAILED
    assert result.reason == (
        "loading job load_nothing failed (loading job request): "
        "The loading job 'load_nothing' does not exist."
    )
    assert_no_secrets(stub, log, result.reason)


def test_missing_data_file_fails_before_posting(tmp_path: Path) -> None:
    with running() as stub:
        project = write_project(
            tmp_path,
            [load_task(files={"f1": "absent.csv"})],
            [tg_connection(stub, token=stub.token)],
        )
        result, _, _ = run_task(project, tmp_path)
    assert result.state is TaskState.FAILED
    assert result.reason is not None
    assert "absent.csv for file variable f1" in result.reason
    assert stub.requests == []


def test_unreachable_server_fails_without_the_secret_in_the_reason(tmp_path: Path) -> None:
    with running() as stub:
        conn = tg_connection(stub, secret=stub.secret)
    # the stub is stopped: nothing listens on its port any more
    project = write_project(tmp_path, [load_task()], [conn])
    result, log, _ = run_task(project, tmp_path)
    assert result.state is TaskState.FAILED
    assert result.reason is not None
    assert result.reason.startswith("token request: cannot reach TigerGraph")
    assert_no_secrets(stub, log, result.reason)


def test_cancellation_while_waiting_for_the_answer_returns_promptly(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("1,ann\n")
    with running(TigerGraphStub(hold=True)) as stub:
        project = write_project(
            tmp_path,
            [load_task(files={"f1": "people.csv"})],
            [tg_connection(stub, token=stub.token)],
        )
        result, log, took = run_task(project, tmp_path, cancel_after=0.5)
    assert result.state is TaskState.FAILED
    assert result.reason is not None
    assert result.reason.startswith("cancelled")
    assert took < 2.0
    assert_no_secrets(stub, log, result.reason)


def test_cancelled_before_starting_sends_nothing(tmp_path: Path) -> None:
    with running() as stub:
        project = write_project(tmp_path, [load_task()], [tg_connection(stub, secret=stub.secret)])
        result, _, _ = run_task(project, tmp_path, cancel_after=0.0)
    assert result.state is TaskState.FAILED
    assert result.reason == "cancelled: the loading job request was abandoned"
    assert stub.requests == []


def test_timeout_is_passed_to_tigergraph_and_bounds_the_wait(tmp_path: Path) -> None:
    with running(TigerGraphStub(hold=True)) as stub:
        project = write_project(tmp_path, [load_task()], [tg_connection(stub, token=stub.token)])
        result, _, took = run_task(project, tmp_path, timeout=1.0)
    assert stub.requests[0].headers["gsql-timeout"] == "1000"
    assert result.state is TaskState.FAILED
    assert result.reason == "loading job request: no answer from TigerGraph within 1 s"
    assert took < 3.0


def test_describe_names_job_graph_and_connection_without_secrets(tmp_path: Path) -> None:
    with running() as stub:
        project = write_project(
            tmp_path,
            [load_task(files={"f1": "/data/p.csv"})],
            [tg_connection(stub, secret=stub.secret)],
        )
    spec = project.dag.tasks["load"]
    ctx = TaskContext(1, "load", 1, tmp_path / "x.log", {}, project)
    assert GsqlBatchTask().command(spec, ctx) is None
    assert GsqlBatchTask().describe(spec, ctx) == (
        "gsql_batch on tg: loading job load_people on graph social using f1=/data/p.csv"
    )


# --------------------------------------------------------------------------- gsql client


def fake_gsql(tmp_path: Path, exit_code: int = 0, name: str = "gsql") -> Path:
    """A gsql that writes each argument on its own line to argv.txt and exits `exit_code`."""
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(
        f'#!/bin/bash\nprintf "%s\\n" "$@" > "{tmp_path}/argv.txt"\n'
        f"echo 'Using graph social'\nexit {exit_code}\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def client_task(**fields: Any) -> dict[str, Any]:
    task = load_task(**fields)
    del task["db"]
    return task


def test_client_argv_is_gsql_g_graph_run_loading_job_using_files(tmp_path: Path) -> None:
    gsql = fake_gsql(tmp_path)
    files = {"f1": "/data/people.csv", "f2": "m1:/data/more.csv"}
    project = write_project(tmp_path, [client_task(gsql=str(gsql), files=files)])
    spec = project.dag.tasks["load"]
    ctx = TaskContext(1, "load", 1, tmp_path / "x.log", {"PATH": "/bin"}, project)
    command = GsqlBatchTask().command(spec, ctx)
    assert command is not None
    assert command.argv == [
        str(gsql),
        "-g",
        "social",
        'RUN LOADING JOB load_people USING f1="/data/people.csv", f2="m1:/data/more.csv"',
    ]
    assert command.env == {"PATH": "/bin"}


def test_client_defaults_to_gsql_on_path_and_a_relative_path_resolves_to_the_tasks_file(
    tmp_path: Path,
) -> None:
    project = write_project(
        tmp_path,
        [client_task(), {**client_task(gsql="bin/gsql"), "id": "relative"}],
    )
    ctx = TaskContext(1, "load", 1, tmp_path / "x.log", {}, project)
    plain = GsqlBatchTask().command(project.dag.tasks["load"], ctx)
    relative = GsqlBatchTask().command(project.dag.tasks["relative"], ctx)
    assert plain is not None and relative is not None
    assert plain.argv == ["gsql", "-g", "social", "RUN LOADING JOB load_people"]
    assert relative.argv[0] == str(tmp_path / "bin" / "gsql")


def test_client_run_in_a_dag_records_argv_and_succeeds(tmp_path: Path) -> None:
    gsql = fake_gsql(tmp_path)
    project = write_project(tmp_path, [client_task(gsql=str(gsql), files={"f1": "/d/p.csv"})])
    recorder = run_project(project, tmp_path)
    assert recorder.ended_once("load").state is TaskState.SUCCESS
    assert (tmp_path / "argv.txt").read_text().splitlines() == [
        "-g",
        "social",
        'RUN LOADING JOB load_people USING f1="/d/p.csv"',
    ]


def test_client_failure_fails_the_task(tmp_path: Path) -> None:
    gsql = fake_gsql(tmp_path, exit_code=1)
    project = write_project(tmp_path, [client_task(gsql=str(gsql))])
    recorder = run_project(project, tmp_path)
    ended = recorder.ended_once("load")
    assert ended.state is TaskState.FAILED
    assert ended.exit_code == 1


# --------------------------------------------------------------------------- gsql_stream


def test_gsql_stream_validates_but_is_refused_in_a_dag_run(tmp_path: Path) -> None:
    with running() as stub:
        stream = {**load_task(), "type": "gsql_stream"}
        project = write_project(tmp_path, [stream], [tg_connection(stub, secret=stub.secret)])
        recorder = run_project(project, tmp_path)
    ended = recorder.ended_once("load")
    assert ended.state is TaskState.FAILED
    assert ended.reason == STREAM_REFUSED
    assert stub.requests == []
    log = Path(ended.log_path or "").read_text()
    assert STREAM_REFUSED in log


def test_gsql_stream_without_db_is_refused_too(tmp_path: Path) -> None:
    gsql = fake_gsql(tmp_path)
    project = write_project(tmp_path, [{**client_task(gsql=str(gsql)), "type": "gsql_stream"}])
    recorder = run_project(project, tmp_path)
    assert recorder.ended_once("load").reason == STREAM_REFUSED
    assert not (tmp_path / "argv.txt").exists()


@pytest.mark.parametrize("timeout", [math.inf, 30 * 86400.0])
def test_a_timeout_without_a_limit_or_too_long_for_the_server_still_runs(
    tmp_path: Path, timeout: float
) -> None:
    with running() as stub:
        project = write_project(tmp_path, [load_task()], [tg_connection(stub, token=stub.token)])
        result, _, _ = run_task(project, tmp_path, timeout=timeout)
    assert result.state is TaskState.SUCCESS, result
    sent = stub.requests[0].headers.get("gsql-timeout")
    assert sent == (None if timeout == math.inf else "2147483647")
