"""The web view (SPEC §9): server-rendered pages of the same data the JSON API serves, through
the same core functions. Every page reads without JavaScript; with it, htmx (vendored in
static/) swaps in a fresh copy of a page's live part every few seconds while something runs,
and a task's log follows as it grows (server-sent events of /v1/.../log?follow=1).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from mflow.api import svg
from mflow.api.common import (
    HERE,
    TOKEN_COOKIE,
    ApiError,
    RunId,
    can_read,
    runs_page,
    store_of,
    token_matches,
)
from mflow.states import RunState, TaskState

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html
LOG_LINES = 5000  # a log page shows the last lines; the full log is one click away
DATA_ROWS = 200  # dataids per dataset on the partitions page

STATE_LABELS = {"NONE": "not started", "UPSTREAM_FAILED": "upstream failed"}


def when(at: float | None) -> str:
    if not at:
        return ""
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def took(start: float | None, end: float | None, now: float | None = None) -> str:
    if not start:
        return ""
    seconds = max((end or now or time.time()) - start, 0.0)
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


templates.env.filters["when"] = when
templates.env.globals.update(took=took, labels=STATE_LABELS, quote=quote)


def page(request: Request, name: str, title: str, **context: Any) -> HTMLResponse:
    store = store_of(request)
    return templates.TemplateResponse(
        request,
        name,
        {"title": title, "store": store.display_url, "now": time.time(), **context},
    )


def _read(request: Request) -> None:
    """Reads of the web view: a browser without the token is sent to the login page."""
    try:
        can_read(request)
    except ApiError as exc:
        raise LoginNeeded(request.url.path) from exc


class LoginNeeded(Exception):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/runs", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/runs", failed: bool = False) -> HTMLResponse:
    return page(request, "login.html", "Sign in", next=_local(next), failed=failed)


@router.post("/login")
async def login(request: Request) -> Response:
    """The token once, kept in a cookie only this site's pages send (HttpOnly, SameSite=Strict);
    the cookie reads, it never writes (common.can_write). The form is parsed here: one
    urlencoded form does not need python-multipart."""
    form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
    token = (form.get("token") or [""])[0]
    next = (form.get("next") or ["/runs"])[0]
    if not token_matches(request, token):
        return RedirectResponse(f"/login?{urlencode({'next': next, 'failed': 1})}", 303)
    response = RedirectResponse(_local(next), status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(
        TOKEN_COOKIE, token, httponly=True, samesite="strict", secure=secure, max_age=86400 * 30
    )
    return response


def _local(path: str) -> str:
    """Only a path on this site (no open redirect)."""
    return path if path.startswith("/") and not path.startswith("//") else "/runs"


# ------------------------------------------------------------------ runs


@router.get("/runs", response_class=HTMLResponse)
def runs_view(
    request: Request,
    dag: str | None = None,
    status: str | None = None,
    page_token_: str | None = Query(None, alias="page_token"),
) -> HTMLResponse:
    from mflow import queries

    _read(request)
    store = store_of(request)
    dag = dag or None
    status = status or None
    runs, token = runs_page(store, dag, queries.parse_run_state(status), 50, page_token_)
    older = None
    if token is not None:
        older = "/runs?" + urlencode(
            {k: v for k, v in {"dag": dag, "status": status}.items() if v} | {"page_token": token}
        )
    return page(
        request,
        "runs.html",
        "Runs",
        runs=runs,
        dags=[d.dag for d in queries.dags(store)],
        states=[s.value for s in RunState],
        dag=dag,
        status=status,
        older=older,
        live=any(r.status is RunState.RUNNING for r in runs),
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: RunId) -> HTMLResponse:
    from mflow import queries

    _read(request)
    store = store_of(request)
    tree = queries.status(store, run_id)
    run = tree.run
    edges = queries.run_graph(store, run)
    states = {n.task.task_id: n.task.state.value for n in tree.tasks}
    now = time.time()

    def href(task: str) -> str:
        return f"/runs/{run.id}/tasks/{quote(task, safe='')}"

    titles = {n.task.task_id: _title(n.task, now) for n in tree.tasks}
    bars = [
        svg.Bar(
            n.task.task_id,
            n.task.state.value,
            n.task.started_at,
            n.task.ended_at,
            href(n.task.task_id),
        )
        for n in tree.tasks
    ]
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    return page(
        request,
        "run.html",
        f"Run {run.id} · {run.dag}",
        tree=tree,
        run=run,
        dag_svg=svg.dag_svg(edges, states, href, titles),
        gantt=svg.gantt_svg(bars, now),
        counts=sorted(counts.items(), key=lambda kv: [s.value for s in TaskState].index(kv[0])),
        total=len(tree.tasks),
        live=_running(tree),
    )


def _title(task: Any, now: float) -> str:
    """A DAG box's tooltip: task, state, time taken, reason."""
    text = f"{task.task_id}: {STATE_LABELS.get(task.state.value, task.state.value)}"
    if task.started_at:
        text += f", {took(task.started_at, task.ended_at, now)}"
    return text + (f" ({task.reason})" if task.reason else "")


def _running(tree: Any) -> bool:
    return tree.run.status is RunState.RUNNING or any(
        _running(c) for n in tree.tasks for c in n.children
    )


@router.get("/runs/{run_id}/tasks/{task}", response_class=HTMLResponse)
def log_page(request: Request, run_id: RunId, task: str) -> HTMLResponse:
    from mflow import queries

    _read(request)
    store = store_of(request)
    run = queries.find_run(store, run_id)
    found = queries.task_log(store, run_id, task)
    text = found.text or ""
    lines = text.splitlines(keepends=True)
    cut = max(len(lines) - LOG_LINES, 0)
    running = found.task.state in (TaskState.RUNNING, TaskState.NONE) or (
        found.task.state is TaskState.FAILED and (found.task.reason or "").endswith("retrying")
    )
    return page(
        request,
        "log.html",
        f"{task} · run {run_id}",
        run=run,
        task=found.task,
        text="".join(lines[cut:]),
        cut=cut,
        missing=found.text is None,
        offset=found.size,
        follow=running and run.status is RunState.RUNNING,
        raw=f"/v1/runs/{run_id}/tasks/{quote(task, safe='')}/log",
    )


# ------------------------------------------------------------------ jobs, partitions, cluster


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request) -> HTMLResponse:
    from mflow.scheduler import catalog

    _read(request)
    store = store_of(request)
    views = [catalog.view(store, r) for r in store.list_jobs()]
    return page(request, "jobs.html", "Jobs", jobs=views)


@router.get("/jobs/{name}", response_class=HTMLResponse)
def job_page(request: Request, name: str) -> HTMLResponse:
    import json

    from mflow.jobs import known_job
    from mflow.scheduler import catalog

    _read(request)
    store = store_of(request)
    record = known_job(store, name)
    return page(
        request,
        "job.html",
        f"Job {name}",
        job=catalog.view(store, record),
        document=json.dumps(dict(record.document), indent=2, sort_keys=True),
        history=catalog.history(store, name, 100),
    )


@router.get("/data", response_class=HTMLResponse)
def data_page(request: Request) -> HTMLResponse:
    from mflow.states import PartitionStatus

    _read(request)
    store = store_of(request)
    statuses = [s.value for s in PartitionStatus]
    grids = []
    for dataset in store.datasets():
        parts = sorted(store.partitions(dataset.name), key=lambda p: p.dataid, reverse=True)
        counts = {s: sum(p.status.value == s for p in parts) for s in statuses}
        grids.append(
            {
                "dataset": dataset,
                "rows": parts[:DATA_ROWS],
                "counts": counts,
                "more": max(len(parts) - DATA_ROWS, 0),
            }
        )
    return page(
        request,
        "data.html",
        "Partitions",
        grids=grids,
        statuses=statuses,
        live=any(g["counts"].get("RUNNING") for g in grids),
    )


@router.get("/cluster", response_class=HTMLResponse)
def cluster_page(request: Request) -> HTMLResponse:
    from mflow.scheduler.cluster import cluster

    _read(request)
    found = cluster(store_of(request))
    return page(
        request, "cluster.html", "Cluster", leader=found.leader, members=found.members, live=True
    )
