"""JSON under /v1 (SPEC §9): runs, DAGs, jobs as DTS-Go names them, datasets, partitions and
the cluster, each through the core function the CLI calls for the same thing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from mflow.api.common import (
    ApiError,
    Read,
    RunId,
    Write,
    from_page_token,
    page_token,
    runs_page,
    started,
    store_of,
)
from mflow.states import PartitionStatus, RunState


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, in one line.")


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad input"},
    401: {"model": ErrorBody, "description": "No token, or a wrong one"},
    403: {"model": ErrorBody, "description": "A write from another site's page"},
    404: {"model": ErrorBody, "description": "No such run, task, job or file"},
    409: {"model": ErrorBody, "description": "Exists already, or the DAG is running"},
    422: {"model": ErrorBody, "description": "A malformed request"},
    503: {"model": ErrorBody, "description": "The state store cannot be reached"},
}
router = APIRouter(responses=ERRORS)

PageSize = Query(50, ge=1, le=250, description="Items per page (at most 250).")


# ------------------------------------------------------------------ runs


@router.get("/runs", dependencies=[Read], tags=["runs"])
def list_runs(
    request: Request,
    dag: str | None = None,
    status: RunState | None = None,
    page_size: int = PageSize,
    page_token_: str | None = Query(
        None,
        alias="page_token",
        pattern=r"^p[0-9]{1,18}$",
        description="next_page_token of the previous page.",
    ),
) -> dict[str, Any]:
    """Runs, newest first; `next_page_token` while there are more."""
    from mflow import queries

    page, token = runs_page(store_of(request), dag, status, page_size, page_token_)
    return {"runs": [queries.record_dict(r) for r in page], "next_page_token": token}


@router.get("/runs/{run_id}", dependencies=[Read], tags=["runs"])
def get_run(request: Request, run_id: RunId) -> dict[str, Any]:
    """A run with its tasks, each with the child runs it started."""
    from mflow import queries

    return queries.tree_dict(queries.status(store_of(request), run_id))


@router.get(
    "/runs/{run_id}/tasks/{task}/log",
    dependencies=[Read],
    tags=["runs"],
    response_model=None,
    responses={
        200: {
            "description": "The log as text, or (follow=1) as server-sent events",
            "content": {
                "text/plain": {"schema": {"type": "string"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        }
    },
)
def task_log(
    request: Request,
    run_id: RunId,
    task: str,
    tail: int | None = Query(None, ge=1, le=100_000, description="Only the last N lines."),
    follow: bool = Query(False, description="Stream as server-sent events until the task ends."),
    offset: int = Query(0, ge=0, description="With follow: the bytes already read."),
) -> Any:
    """A task's log (every attempt) as text; `follow=1` streams it as server-sent events
    (one `data:` line per log line, then `event: end`) until the task has ended."""
    from mflow import queries

    store = store_of(request)
    if follow:
        row = queries.find_task(store, run_id, task)
        return StreamingResponse(
            _events(queries.follow_log(store, run_id, row, offset=offset)),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    found = queries.task_log(store, run_id, task)
    text = found.text or ""
    if tail is not None:
        text = "".join(text.splitlines(keepends=True)[-tail:])
    return PlainTextResponse(text)


def _events(chunks: Iterator[str]) -> Iterator[str]:
    """Server-sent events: one `data:` event per whole line written, the last partial line
    when the log ends, then `event: end`."""
    partial = ""
    for chunk in chunks:
        lines = (partial + chunk).split("\n")
        partial = lines.pop()
        for line in lines:
            yield f"data: {line.rstrip(chr(13))}\n\n"
    if partial:
        yield f"data: {partial}\n\n"
    yield "event: end\ndata: \n\n"


class StartRun(BaseModel):
    taskfile: str = Field(
        description="A DAG file under the server's --root.",
        min_length=1,
        max_length=4096,
        pattern=r"^[^\x00]+$",
    )
    concurrency: int | None = Field(None, ge=1)
    target: str | None = None
    oneshot: str | None = None
    fail_fast: bool = False


@router.post("/runs", status_code=202, dependencies=[Write], tags=["runs"])
def start_run(request: Request, body: StartRun) -> dict[str, Any]:
    """Start a DAG in the background (its own mflow process); 202 with the run id."""
    from mflow.launch import launch
    from mflow.plan import RunRequest

    settings = request.app.state.settings
    root = settings.root.resolve()
    try:
        taskfile = (root / body.taskfile).resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL, a symlink loop
        raise ApiError(400, f"taskfile '{body.taskfile}' is not a usable path: {exc}") from None
    if not taskfile.is_relative_to(root):
        raise ApiError(400, f"taskfile '{body.taskfile}' is not under the server's root")
    if not taskfile.is_file():
        raise ApiError(404, f"taskfile '{body.taskfile}' not found under the server's root")
    launched = started(
        request,
        launch(
            RunRequest(
                config=settings.config,
                taskfile=taskfile,
                datasources=settings.datasources,
                state=settings.state,
                concurrency=body.concurrency,
                target=body.target,
                oneshot=body.oneshot,
                fail_fast=body.fail_fast,
            ),
            cwd=taskfile.parent,
        ),
    )
    return {"run_id": launched.run_id}


@router.post("/runs/{run_id}/stop", status_code=202, dependencies=[Write], tags=["runs"])
def stop_run(request: Request, run_id: RunId) -> dict[str, Any]:
    """Stop a running run wherever it runs (as `mflow stop`); answers at once."""
    from mflow import control, queries

    store = store_of(request)
    result = control.stop_run(store, queries.find_run(store, run_id), wait=0)
    return {"run_id": run_id, "status": result.run.status.value, "signalled": result.signalled}


@router.post("/runs/{run_id}/resume", status_code=202, dependencies=[Write], tags=["runs"])
def resume_run(request: Request, run_id: RunId) -> dict[str, Any]:
    """Resume a run (as `mflow --resume`) in the background; 202 with its id."""
    from mflow import queries
    from mflow.launch import launch
    from mflow.plan import RunRequest

    settings = request.app.state.settings
    store = store_of(request)
    run = queries.find_run(store, run_id)
    if run.parent_run_id is not None:
        raise ApiError(400, f"run {run_id} is a child run: resume run {run.parent_run_id}")
    taskfile = Path(run.taskfile)
    if not taskfile.is_file():
        if taskfile.name == run.dag and store.get_job(run.dag) is not None:
            raise ApiError(
                400, f"run {run_id} is a run of job '{run.dag}': POST /v1/jobs/{run.dag}/trigger"
            )
        raise ApiError(400, f"run {run_id}'s taskfile {run.taskfile} is gone")
    launched = started(
        request,
        launch(
            RunRequest(
                config=settings.config,
                taskfile=taskfile,
                datasources=settings.datasources,
                state=settings.state,
                resume=str(run_id),
            ),
            cwd=taskfile.parent,
        ),
    )
    return {"run_id": launched.run_id}


@router.get("/dags", dependencies=[Read], tags=["runs"])
def dags(request: Request) -> dict[str, Any]:
    """The DAGs the store knows, with their latest run."""
    from mflow import queries

    return {
        "dags": [
            {"dag": d.dag, "runs": d.runs, "last_run": queries.record_dict(d.last_run)}
            for d in queries.dags(store_of(request))
        ]
    }


# ------------------------------------------------------------------ jobs


class JobBody(BaseModel, extra="allow"):
    """A job document (SPEC §5): a task's fields and the schedule fields."""

    type: str


class NewJob(JobBody):
    name: str


def _check_job(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    from mflow.jobs import check_job

    check_job(name, doc, "request body")
    return doc


def _view(request: Request, record: Any) -> dict[str, Any]:
    from dataclasses import asdict

    from mflow.scheduler import catalog

    return asdict(catalog.view(store_of(request), record))


@router.post("/jobs", status_code=201, dependencies=[Write], tags=["jobs"])
def create_job(request: Request, body: NewJob) -> dict[str, Any]:
    """Create a job (409 when the name exists)."""
    from mflow.scheduler import catalog

    doc = body.model_dump(exclude={"name"}, exclude_none=True)
    store = store_of(request)
    if store.get_job(body.name) is not None:
        raise ApiError(409, f"job '{body.name}' exists: PUT /v1/jobs/{body.name} replaces it")
    record = catalog.add(
        store, body.name, _check_job(body.name, doc), str(request.app.state.settings.root.resolve())
    )
    return _view(request, record)


@router.get("/jobs", dependencies=[Read], tags=["jobs"])
def list_jobs(
    request: Request,
    status: str | None = Query(None, pattern="^(enabled|paused)$"),
    page_size: int = PageSize,
    page_token_: str | None = Query(
        None,
        alias="page_token",
        pattern=r"^p.{1,200}$",
        description="next_page_token of the previous page.",
    ),
) -> dict[str, Any]:
    """Jobs by name: schedule, next fire, last run."""
    after = from_page_token(page_token_)
    records = [
        r
        for r in store_of(request).list_jobs()
        if (after is None or r.name > after)
        and (status is None or r.enabled == (status == "enabled"))
    ]
    page = records[:page_size]
    return {
        "jobs": [_view(request, r) for r in page],
        "next_page_token": page_token(page[-1].name) if len(records) > page_size else None,
    }


@router.get("/jobs/{name}", dependencies=[Read], tags=["jobs"])
def get_job(request: Request, name: str) -> dict[str, Any]:
    from mflow.scheduler import catalog

    record = catalog.known_job(store_of(request), name)
    return {**_view(request, record), "document": dict(record.document)}


@router.put("/jobs/{name}", dependencies=[Write], tags=["jobs"])
def replace_job(request: Request, name: str, body: JobBody) -> dict[str, Any]:
    """Replace a job's document (404 when there is none)."""
    from mflow.scheduler import catalog

    doc = _check_job(name, body.model_dump(exclude_none=True))
    record = catalog.update(
        store_of(request), name, doc, str(request.app.state.settings.root.resolve())
    )
    return _view(request, record)


@router.delete("/jobs/{name}", status_code=204, dependencies=[Write], tags=["jobs"])
def delete_job(request: Request, name: str) -> None:
    from mflow.scheduler import catalog

    catalog.delete(store_of(request), name)


@router.post("/jobs/{name}/trigger", status_code=202, dependencies=[Write], tags=["jobs"])
def trigger_job(request: Request, name: str) -> dict[str, Any]:
    """Start a run of the job now (a manual slot); 202 with the run id (null: a
    partition-aware job found no data ready)."""
    from mflow.plan import RunRequest
    from mflow.scheduler import catalog

    settings = request.app.state.settings
    fire, launched = catalog.trigger(
        store_of(request),
        name,
        RunRequest(config=settings.config, datasources=settings.datasources, state=settings.state),
    )
    started(request, launched)
    return {"job": name, "run_id": launched.run_id, "slot": fire.slot}


@router.get("/jobs/{name}/history", dependencies=[Read], tags=["jobs"])
def job_history(
    request: Request, name: str, limit: int = Query(50, ge=1, le=1000)
) -> dict[str, Any]:
    from dataclasses import asdict

    from mflow.scheduler import catalog

    return {"history": [asdict(r) for r in catalog.history(store_of(request), name, limit)]}


# ------------------------------------------------------------------ partitions, cluster


@router.get("/datasets", dependencies=[Read], tags=["partitions"])
def datasets(request: Request) -> dict[str, Any]:
    return {
        "datasets": [
            {"name": d.name, "fields": dict(d.fields)} for d in store_of(request).datasets()
        ]
    }


@router.get("/data", dependencies=[Read], tags=["partitions"])
def data(
    request: Request, dataset: str | None = None, status: PartitionStatus | None = None
) -> dict[str, Any]:
    """Partitions: dataset, dataid, status, job, run_id, host, updated."""
    from mflow import partitions

    found = store_of(request).partitions(dataset, status)
    return {"data": [partitions.partition_dict(p) for p in found]}


@router.get("/cluster", dependencies=[Read], tags=["cluster"])
def cluster(request: Request) -> dict[str, Any]:
    """The leader (name, hostname, since, epoch) and the members."""
    from mflow.scheduler.cluster import cluster as of

    return of(store_of(request)).as_dict()
