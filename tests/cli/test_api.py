"""`mflow serve` (issue 17, SPEC §9): the REST API and the web view.

Through FastAPI's TestClient on a store that real `mflow` runs filled, and through a real
`mflow serve` process on SQLite and PostgreSQL: runs (paged, filtered, nested child runs, task
logs, live follow), starting, stopping and resuming runs in the background, jobs as DTS-Go
names them, datasets, partitions, the cluster; errors as JSON with the right status; the
bearer token; no secret in any answer. The browser test is in test_web_browser.py, the
OpenAPI fuzzing in test_api_schema.py.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port
from mflow_cli import MflowRunner
from serving import TOKEN, Server, serve
from support import bash, wait_for

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from mflow.api.app import create_app
from mflow.api.common import ApiSettings


def write(path: Path, tasks: list[dict[str, Any]], name: str) -> Path:
    path.write_text(json.dumps({"name": name, "tasks": tasks}))
    return path


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mflow-home' / 'state.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def filled(tmp_path: Path, mflow: MflowRunner, request: pytest.FixtureRequest) -> str:
    """A store (SQLite, PostgreSQL) with a parent run (a diamond, a failing task, a child
    DAG) and two more runs of another DAG; returns its URL."""
    write(tmp_path / "child.json", [bash("c1", "echo child says hi")], "child")
    write(
        tmp_path / "parent.json",
        [
            bash("a", "echo line one; echo line two"),
            bash("b", "echo b", "a"),
            bash("bad", "echo about to fail; exit 3", "a"),
            {"id": "sub", "type": "mflow", "taskfile": "child.json", "depends": ["b"]},
            bash("after", "true", "bad"),
        ],
        "parent",
    )
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
    else:
        url = request.getfixturevalue("postgres_url")
    assert mflow("--taskfile", "parent.json", "--state", url).code == 1
    write(tmp_path / "other.json", [bash("x", "true")], "other")
    for _ in range(2):
        assert mflow("--taskfile", "other.json", "--state", url).code == 0
    return url


@pytest.fixture
def client(filled: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(ApiSettings(state=filled, root=tmp_path))) as c:
        yield c


# ------------------------------------------------------------------ reads


def test_runs_newest_first_with_filters_and_pages(client: TestClient) -> None:
    runs = client.get("/v1/runs").json()["runs"]
    assert [(r["id"], r["dag"]) for r in runs] == [
        (4, "other"),
        (3, "other"),
        (2, "child"),
        (1, "parent"),
    ]
    assert client.get("/v1/runs", params={"dag": "other"}).json()["runs"][0]["id"] == 4
    failed = client.get("/v1/runs", params={"status": "FAILED"}).json()["runs"]
    assert [r["id"] for r in failed] == [1]
    first = client.get("/v1/runs", params={"page_size": 3}).json()
    assert [r["id"] for r in first["runs"]] == [4, 3, 2] and first["next_page_token"]
    rest = client.get(
        "/v1/runs", params={"page_size": 3, "page_token": first["next_page_token"]}
    ).json()
    assert [r["id"] for r in rest["runs"]] == [1] and rest["next_page_token"] is None


def test_a_run_with_its_tasks_and_the_child_run_nested(client: TestClient) -> None:
    body = client.get("/v1/runs/1").json()
    assert body["run"]["status"] == "FAILED"
    tasks = {t["task_id"]: t for t in body["tasks"]}
    assert tasks["bad"]["state"] == "FAILED" and tasks["bad"]["exit_code"] == 3
    assert tasks["after"]["state"] == "UPSTREAM_FAILED"
    (child,) = tasks["sub"]["children"]
    assert child["run"]["dag"] == "child" and child["tasks"][0]["task_id"] == "c1"


def test_a_task_log_whole_tail_and_followed(client: TestClient) -> None:
    log = client.get("/v1/runs/1/tasks/a/log")
    assert log.status_code == 200 and "line one\nline two\n" in log.text
    assert client.get("/v1/runs/1/tasks/a/log", params={"tail": 1}).text.strip() == "line two"
    with client.stream("GET", "/v1/runs/1/tasks/a/log", params={"follow": 1}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = "".join(stream.iter_text())
    assert "data: line one\n\ndata: line two\n\n" in events
    assert events.endswith("event: end\ndata: \n\n")


def test_dags_datasets_data_cluster_and_health(client: TestClient) -> None:
    dags = {d["dag"]: d for d in client.get("/v1/dags").json()["dags"]}
    assert dags["other"]["runs"] == 2 and dags["other"]["last_run"]["id"] == 4
    assert client.get("/v1/datasets").json() == {"datasets": []}
    assert client.get("/v1/data").json() == {"data": []}
    assert client.get("/v1/cluster").json() == {"leader": None, "followers": []}
    assert client.get("/healthz").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/v1/runs/99", 404, "run 99 not found"),
        ("/v1/runs/1/tasks/nope/log", 404, "run 1 has no task 'nope'"),
        ("/v1/runs?status=GREEN", 422, "status"),
        ("/v1/runs?page_token=zz", 422, "page_token"),
        ("/v1/runs?page_size=251", 422, "page_size"),
        ("/v1/runs/abc", 422, "run_id"),
        ("/v1/jobs/nope", 404, "unknown job 'nope'"),
        ("/v1/nothing", 404, "Not Found"),
        ("/v1/data?status=MAYBE", 422, "status"),
    ],
)
def test_bad_requests_are_json_errors(
    client: TestClient, path: str, status: int, says: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert says in answer.json()["error"]


def test_the_openapi_document_lists_every_endpoint(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/jobs",
        "/v1/jobs/{name}",
        "/v1/jobs/{name}/trigger",
        "/v1/jobs/{name}/history",
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/tasks/{task}/log",
        "/v1/runs/{run_id}/stop",
        "/v1/runs/{run_id}/resume",
        "/v1/datasets",
        "/v1/data",
        "/v1/cluster",
        "/healthz",
    } <= set(paths)
    assert client.get("/docs").status_code == 200


# ------------------------------------------------------------------ jobs


def test_jobs_create_list_page_replace_trigger_history_delete(
    client: TestClient, tmp_path: Path
) -> None:
    job = {"type": "bash", "command": "echo from the api", "cron": "0 3 * * *"}
    made = client.post("/v1/jobs", json={"name": "nightly", **job})
    assert made.status_code == 201, made.text
    assert made.json()["schedule"] == "cron 0 3 * * *" and made.json()["next_fire"] > time.time()
    assert client.post("/v1/jobs", json={"name": "nightly", **job}).status_code == 409
    for name in ("a1", "a2"):
        paused = {**job, "enabled": False}
        assert client.post("/v1/jobs", json={"name": name, **paused}).status_code == 201
    page = client.get("/v1/jobs", params={"page_size": 2}).json()
    assert [j["name"] for j in page["jobs"]] == ["a1", "a2"]
    rest = client.get("/v1/jobs", params={"page_token": page["next_page_token"]}).json()
    assert [j["name"] for j in rest["jobs"]] == ["nightly"]
    enabled = client.get("/v1/jobs", params={"status": "enabled"}).json()["jobs"]
    assert [j["name"] for j in enabled] == ["nightly"]
    replaced = client.put("/v1/jobs/nightly", json={**job, "cron": "30 4 * * *"})
    assert replaced.status_code == 200 and replaced.json()["schedule"] == "cron 30 4 * * *"
    assert client.get("/v1/jobs/nightly").json()["document"]["cron"] == "30 4 * * *"

    triggered = client.post("/v1/jobs/nightly/trigger")
    assert triggered.status_code == 202, triggered.text
    run_id = triggered.json()["run_id"]
    wait_for(
        lambda: client.get(f"/v1/runs/{run_id}").json()["run"]["status"] == "SUCCESS",
        "the triggered run to succeed",
    )
    assert "from the api" in client.get(f"/v1/runs/{run_id}/tasks/nightly/log").text
    (slot,) = client.get("/v1/jobs/nightly/history").json()["history"]
    assert slot["kind"] == "manual" and slot["run_id"] == run_id

    assert client.delete("/v1/jobs/nightly").status_code == 204
    assert client.get("/v1/jobs/nightly").status_code == 404
    assert client.put("/v1/jobs/nightly", json=job).status_code == 404


def test_a_bad_job_document_names_the_field(client: TestClient) -> None:
    answer = client.post("/v1/jobs", json={"name": "j", "type": "bash", "cron": "every day"})
    assert answer.status_code == 400
    assert "cron" in answer.json()["error"]
    assert client.post("/v1/jobs", json={"name": "j"}).status_code == 422


# ------------------------------------------------------------------ auth


def test_reads_and_writes_need_the_token(filled: str, tmp_path: Path) -> None:
    settings = ApiSettings(state=filled, root=tmp_path, token=TOKEN)
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/runs").status_code == 401
        assert c.get("/v1/runs").headers["www-authenticate"] == "Bearer"
        wrong = {"Authorization": "Bearer nope"}
        assert c.get("/v1/runs", headers=wrong).status_code == 401
        right = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/v1/runs", headers=right).status_code == 200
        assert c.post("/v1/runs/1/stop").status_code == 401
        # The web view's cookie reads; it never writes.
        c.cookies.set("mflow_token", TOKEN)
        assert c.get("/v1/runs").status_code == 200
        assert c.post("/v1/jobs", json={"name": "x", "type": "bash"}).status_code == 401
        # A browser page of another site cannot write even with the token at hand.
        hostile = {**right, "Origin": "http://evil.example"}
        assert c.post("/v1/runs/1/stop", headers=hostile).status_code == 403


def test_public_read_opens_reads_only(filled: str, tmp_path: Path) -> None:
    settings = ApiSettings(state=filled, root=tmp_path, token=TOKEN, public_read=True)
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/runs").status_code == 200
        assert c.get("/runs").status_code == 200
        assert c.post("/v1/runs/1/resume").status_code == 401
        assert c.delete("/v1/jobs/x").status_code == 401


def test_the_web_view_asks_for_the_token_once(filled: str, tmp_path: Path) -> None:
    settings = ApiSettings(state=filled, root=tmp_path, token=TOKEN)
    with TestClient(create_app(settings)) as c:
        first = c.get("/runs/1", follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/login?next=%2Fruns%2F1"
        bad = c.post("/login", data={"token": "nope", "next": "/runs/1"}, follow_redirects=False)
        assert "failed=1" in bad.headers["location"]
        good = c.post("/login", data={"token": TOKEN, "next": "/runs/1"}, follow_redirects=False)
        assert good.headers["location"] == "/runs/1"
        assert "httponly" in good.headers["set-cookie"].lower()
        assert "samesite=strict" in good.headers["set-cookie"].lower()
        assert "Run 1" in c.get("/runs/1").text
        away = c.post("/login", data={"token": TOKEN, "next": "//evil.example/"})
        assert away.url.path == "/runs"  # no open redirect


def test_serve_refuses_another_address_without_a_token(mflow: MflowRunner) -> None:
    code, out, err = mflow("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert code == 2 and out == ""
    assert err.startswith("--host 0.0.0.0: serving another address than 127.0.0.1 needs a token")
    assert len(err.splitlines()) <= 2, err


# ------------------------------------------------------------------ web pages


def test_web_pages_read_without_javascript(client: TestClient, tmp_path: Path) -> None:
    runs = client.get("/runs").text
    assert 'href="/runs/1"' in runs and "parent" in runs and "Older runs" not in runs
    run = client.get("/runs/1").text
    assert '<svg class="dag"' in run and "upstream failed" in run
    assert 'class="node st-FAILED"' in run and 'href="/runs/1/tasks/bad"' in run
    assert 'child <a href="/runs/2">run 2</a>' in run
    assert '<svg class="gantt"' in run
    log = client.get("/runs/1/tasks/bad").text
    assert "about to fail" in log and 'data-live="0"' in log
    assert client.get("/runs/1?x=1").status_code == 200
    missing = client.get("/runs/99")
    assert missing.status_code == 404 and "run 99 not found" in missing.text
    assert missing.headers["content-type"].startswith("text/html")
    for page in ("/jobs", "/data", "/cluster", "/runs?dag=other&status=SUCCESS"):
        answer = client.get(page)
        assert answer.status_code == 200, page
    assert client.get("/", follow_redirects=False).headers["location"] == "/runs"
    assert client.get("/static/htmx.min.js").status_code == 200


# ------------------------------------------------------------------ a real server


def _status(server: Server, run_id: int) -> str:
    return server.call("GET", f"/v1/runs/{run_id}")[1]["run"]["status"]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_real_server_starts_stops_and_resumes_runs(
    backend: str, tmp_path: Path, mflow_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    url = sqlite_url(tmp_path) if backend == "sqlite" else request.getfixturevalue("postgres_url")
    dags = tmp_path / "dags"
    dags.mkdir()
    write(dags / "quick.json", [bash("one", "echo quick"), bash("two", "echo two", "one")], "quick")
    write(
        dags / "slow.json",
        [bash("gate", "test -e go || exit 4"), bash("wait", "sleep 300", "gate")],
        "slow",
    )
    with serve(tmp_path, mflow_env, "--state", url, "--root", str(dags)) as server:
        code, body = server.call("POST", "/v1/runs", {"taskfile": "quick.json"})
        assert code == 202, body
        quick = body["run_id"]
        wait_for(lambda: _status(server, quick) == "SUCCESS", "the quick run to succeed")
        assert server.call("GET", f"/v1/runs/{quick}/tasks/two/log")[1].endswith("two\n")

        # Outside the root, or no such file: refused before anything starts.
        assert server.call("POST", "/v1/runs", {"taskfile": "../x.json"})[0] == 400
        assert server.call("POST", "/v1/runs", {"taskfile": "nope.json"})[0] == 404

        # Stop a running run from the API; then resume it: the failed gate runs again.
        code, body = server.call("POST", "/v1/runs", {"taskfile": "slow.json"})
        slow = body["run_id"]
        wait_for(lambda: _status(server, slow) == "FAILED", "the gate to fail")
        (dags / "go").touch()
        code, body = server.call("POST", f"/v1/runs/{slow}/resume")
        assert code == 202 and body["run_id"] == slow
        tasks = lambda: {  # noqa: E731
            t["task_id"]: t["state"] for t in server.call("GET", f"/v1/runs/{slow}")[1]["tasks"]
        }
        wait_for(lambda: tasks()["wait"] == "RUNNING", "the resumed run's sleep to start")
        code, body = server.call("POST", f"/v1/runs/{slow}/stop")
        assert code == 202, body
        wait_for(lambda: _status(server, slow) == "CANCELLED", "the stop to end the run")
        assert tasks() == {"gate": "SUCCESS", "wait": "CANCELLED"}
        code, body = server.call("POST", f"/v1/runs/{slow}/stop")
        assert code == 400 and "is not running" in body["error"]


def test_no_secret_in_any_answer(
    tmp_path: Path, mflow_env: dict[str, str], postgres_url: str
) -> None:
    secret = "s3cret-Pa55"
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url).set(password=secret).render_as_string(hide_password=False)
    # (trust auth ignores the password; it must never be shown)
    write(tmp_path / "quick.json", [bash("one", 'echo "$MFLOW_STATE"')], "quick")
    with serve(tmp_path, mflow_env, "--state", url, "--public-read") as server:
        code, body = server.call("POST", "/v1/runs", {"taskfile": "quick.json"})
        assert code == 202, body
        run = body["run_id"]
        wait_for(lambda: _status(server, run) == "SUCCESS", "the run to succeed")
        answers = [
            server.call("GET", "/healthz"),
            server.call("GET", "/v1/runs"),
            server.call("GET", f"/v1/runs/{run}"),
            server.call("GET", f"/v1/runs/{run}/tasks/one/log"),
            server.call("GET", "/v1/runs/12345"),
            server.call("GET", "/runs"),
            server.call("GET", f"/runs/{run}/tasks/one"),
        ]
    text = json.dumps(answers)
    assert secret not in text
    assert "***" in json.dumps(answers[0])


def test_a_slow_task_log_is_followed_over_http(tmp_path: Path, mflow_env: dict[str, str]) -> None:
    write(
        tmp_path / "ticks.json",
        [bash("tick", "for i in 1 2 3; do echo tick $i; sleep 0.5; done")],
        "ticks",
    )
    with serve(tmp_path, mflow_env, "--state", sqlite_url(tmp_path)) as server:
        run = server.call("POST", "/v1/runs", {"taskfile": "ticks.json"})[1]["run_id"]
        request = urllib.request.Request(
            f"{server.url}/v1/runs/{run}/tasks/tick/log?follow=1",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        started = time.monotonic()
        lines = []
        with urllib.request.urlopen(request, timeout=30) as stream:
            for raw in stream:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: tick"):
                    lines.append((line[6:], time.monotonic() - started))
    assert [text for text, _ in lines] == ["tick 1", "tick 2", "tick 3"]
    assert lines[-1][1] - lines[0][1] > 0.5  # they came as written, not at the end


def test_the_server_leaves_no_zombie_behind(tmp_path: Path, mflow_env: dict[str, str]) -> None:
    write(tmp_path / "quick.json", [bash("one", "true")], "quick")
    with serve(tmp_path, mflow_env, "--state", sqlite_url(tmp_path)) as server:
        for _ in range(3):
            run = server.call("POST", "/v1/runs", {"taskfile": "quick.json"})[1]["run_id"]
            wait_for(lambda run=run: _status(server, run) == "SUCCESS", "the run to end")

        def zombies() -> list[str]:
            children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
            found = []
            for pid in children.read_text().split():
                try:
                    if Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z":
                        found.append(pid)
                except OSError:
                    pass
            return found

        wait_for(lambda: not zombies(), "the server to reap its finished runs", timeout=15)
