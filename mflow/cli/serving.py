"""Long-running faces: `mflow serve` (HTTP API, web view) and `mflow worker` (Celery).

(No `from __future__ import annotations`: see mflow/cli/__init__.py.)
"""

import sys
from pathlib import Path
from typing import Annotated

import typer

from mflow.cli.app import (
    ConfigOpt,
    DatasourcesOpt,
    StateOpt,
    app,
    given,
)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on; another than 127.0.0.1 needs MFLOW_API_TOKEN."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 8080,
    public_read: Annotated[
        bool, typer.Option("--public-read", help="Reads need no token (writes still do).")
    ] = False,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="POST /v1/runs starts task files under this directory (default: the current one).",
        ),
    ] = None,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
) -> None:
    """Serve the REST API (/v1, OpenAPI at /docs) and the web view of this store."""
    import os

    from mflow.errors import ConfigError

    try:
        import uvicorn

        from mflow.api.app import create_app
        from mflow.api.common import ApiSettings
    except ImportError as exc:
        raise ConfigError(
            f"mflow serve needs the 'api' extra ({exc.name} is not installed)",
            json_path="",
            hint="pip install 'mflow[api]'",
        ) from None
    token = os.environ.get("MFLOW_API_TOKEN") or None
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        raise ConfigError(
            f"--host {host}: serving another address than 127.0.0.1 needs a token",
            json_path="",
            hint="export MFLOW_API_TOKEN=<a long random string>; clients send "
            "'Authorization: Bearer <it>'",
        )
    outer = given(ctx)
    root = (root or Path.cwd()).resolve()
    if not root.is_dir():
        raise ConfigError(f"--root {root}: not a directory", json_path="")
    settings = ApiSettings(
        state=state or outer.state,
        config=config or outer.config,
        datasources=datasources or outer.datasources,
        root=root,
        token=token,
        public_read=public_read,
    )
    application = create_app(settings)
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    print(
        f"mflow serve: {where}/ (API {where}/v1, OpenAPI {where}/docs) on "
        f"{application.state.store.display_url}"
        + ("; reads are public" if public_read else "")
        + ("" if token else "; no token: local use only"),
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)
    except SystemExit as exc:  # uvicorn exits 1 when it cannot bind
        raise ConfigError(
            f"mflow serve: could not listen on {host}:{port} (in use, or not an address here)",
            json_path="",
        ) from exc


@app.command()
def worker(
    ctx: typer.Context,
    queues: Annotated[
        str, typer.Option("--queues", "-Q", help="Queues to take attempts from, comma-separated.")
    ] = "mflow",
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", "-c", min=1, help="Attempts at once (default: CPUs)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="This worker's name (default: mflow@host-pid).")
    ] = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
) -> None:
    """Run a Celery worker: it runs the attempts of runs whose config.json says
    "executor": "celery", with this machine's datasources (extra `celery`)."""
    import os

    from mflow.errors import ConfigError
    from mflow.project import load_config, load_datasources

    try:
        import celery  # noqa: F401

        from mflow.worker import WorkerFiles, run_worker
    except ImportError as exc:
        raise ConfigError(
            f"mflow worker needs the 'celery' extra ({exc.name} is not installed)",
            json_path="",
            hint="pip install 'mflow[celery]'",
        ) from None
    outer = given(ctx)
    files = WorkerFiles(
        load_config(config or outer.config), load_datasources(datasources or outer.datasources)
    )
    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    if not wanted:
        raise ConfigError("--queues: give at least one queue name", json_path="")
    run_worker(files, wanted, concurrency or os.cpu_count() or 1, name)
