"""The HTTP face of mflow (SPEC §9): the FastAPI application and its error handlers.

`create_app(settings)` builds the app on one store (the one the CLI would use with the same
options). Routes call the core functions the CLI calls (`mflow.queries`, `mflow.control`,
`mflow.launch`, `mflow.scheduler.catalog`, `mflow.partitions`): JSON under /v1 (`v1.py`), the
web view under / (`web.py`). Errors are JSON `{"error": message}` with the status of what
went wrong (400 bad input, 401 no or wrong token, 403 another site, 404 unknown, 409 busy,
422 malformed), never a 500 for bad input. Every write needs the bearer token of
`MFLOW_API_TOKEN`, and so does every read unless `public_read` (`common.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from mflow.api.common import HERE, ApiError, ApiSettings, Children
from mflow.api.web import LoginNeeded
from mflow.errors import (
    BackendUnavailable,
    ConfigError,
    InvalidInput,
    MflowError,
    RunAlreadyActive,
    RunNotFound,
)

if TYPE_CHECKING:
    from mflow.state.base import StateStore

REAP_EVERY = 5.0  # seconds between looks for finished background runs


def create_app(settings: ApiSettings, store: StateStore | None = None) -> FastAPI:
    """The application; `store` defaults to the one the settings' files and options name."""
    from mflow import __version__
    from mflow.api import v1, web

    if store is None:
        from mflow.project import open_store_from_files

        store = open_store_from_files(settings.state, settings.config, settings.datasources)
    children = Children()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def reap() -> None:
            while True:
                await asyncio.sleep(REAP_EVERY)
                children.reap()

        reaper = asyncio.create_task(reap())
        try:
            yield
        finally:
            reaper.cancel()
            store.close()

    app = FastAPI(
        title="mflow",
        version=__version__,
        description="Runs, jobs, partitions and the schedulers of one mflow store (SPEC §9). "
        "Send `Authorization: Bearer $MFLOW_API_TOKEN`.",
        docs_url="/docs",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.children = children
    app.add_exception_handler(MflowError, _mflow_error)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(LoginNeeded, _login_needed)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.include_router(v1.router, prefix="/v1")
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The server answers and its store is reachable."""
        store.list_runs(limit=1)
        return {"status": "ok", "store": store.display_url}

    return app


# ------------------------------------------------------------------ errors


def _status_of(exc: MflowError) -> int:
    if isinstance(exc, RunNotFound):
        return 404
    if isinstance(exc, RunAlreadyActive):
        return 409
    if isinstance(exc, BackendUnavailable):
        return 503
    if isinstance(exc, ConfigError | InvalidInput):
        return 404 if str(exc).startswith(("unknown job", "unknown dataset")) else 400
    from mflow.launch import LaunchError

    if isinstance(exc, LaunchError):
        return {2: 400, 3: 409}.get(int(exc.exit_code), 500)
    return 400


def _error(request: Request, status: int, message: str) -> Response:
    """`{"error": message}` for the API; a page saying it for the web view."""
    from mflow.secrets import mask_url

    message = mask_url(message)
    if request.url.path.startswith(("/v1/", "/healthz", "/static/")):
        return JSONResponse({"error": message}, status_code=status)
    from mflow.api.web import page

    response = page(request, "error.html", f"{status}", status=status, message=message)
    response.status_code = status
    return response


async def _mflow_error(request: Request, exc: MflowError) -> Response:
    return _error(request, _status_of(exc), str(exc))


async def _api_error(request: Request, exc: ApiError) -> Response:
    response = _error(request, exc.status, exc.message)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _login_needed(request: Request, exc: LoginNeeded) -> Response:
    return RedirectResponse(f"/login?{urlencode({'next': exc.path})}", status_code=303)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        message = error.get("msg", "invalid")
        problems.append(f"{where}: {message}" if where else message)
    return _error(request, 422, "; ".join(problems) or "invalid request")


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    return _error(request, exc.status_code, str(exc.detail))
