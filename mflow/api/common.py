"""What every route of the HTTP face shares: its settings, its errors, the bearer-token checks
(constant time), the store, page tokens, and the background runs it started (reaped)."""

from __future__ import annotations

import hmac
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from fastapi import Path as PathParam

from mflow.states import MAX_ID, RunState, is_run_id

if TYPE_CHECKING:
    from mflow.launch import Launched
    from mflow.state.base import RunRecord, StateStore

HERE = Path(__file__).parent
RunId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="A run id.")]
TOKEN_COOKIE = "mflow_token"


@dataclass(frozen=True)
class ApiSettings:
    state: str | None = None
    config: Path | None = None
    datasources: Path | None = None
    root: Path = Path(".")  # POST /v1/runs starts taskfiles under this directory only
    token: str | None = None  # MFLOW_API_TOKEN
    public_read: bool = False


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ------------------------------------------------------------------ auth


def _given_token(request: Request, *, cookie: bool) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.cookies.get(TOKEN_COOKIE) if cookie else None


def _token_ok(request: Request, *, cookie: bool) -> bool:
    expected = request.app.state.settings.token
    if expected is None:
        return True  # only on 127.0.0.1 (serve refuses another address without a token)
    given = _given_token(request, cookie=cookie)
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def token_matches(request: Request, given: str) -> bool:
    """The web view's sign-in: the token typed matches (constant time)."""
    expected = request.app.state.settings.token
    return expected is None or hmac.compare_digest(given.encode(), expected.encode())


NEED_TOKEN = "a bearer token is needed (Authorization: Bearer $MFLOW_API_TOKEN)"


def can_read(request: Request) -> None:
    """A dependency: reads need the token (header, or the web view's cookie) unless the
    server was started with --public-read."""
    if request.app.state.settings.public_read or _token_ok(request, cookie=True):
        return
    raise ApiError(401, NEED_TOKEN)


def can_write(request: Request) -> None:
    """A dependency: writes need the token in the Authorization header (never a cookie, so
    another site's page cannot make a browser write), and a browser's request must come from
    this server's own pages (its Origin is this host)."""
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
        raise ApiError(403, f"a write from another site ({origin}) is refused")
    if not _token_ok(request, cookie=False):
        raise ApiError(401, NEED_TOKEN)


Read = Depends(can_read)
Write = Depends(can_write)


def store_of(request: Request) -> StateStore:
    return request.app.state.store  # type: ignore[no-any-return]


def page_token(value: Any) -> str:
    return f"p{value}"


def from_page_token(token: str | None) -> str | None:
    if token is None:
        return None
    if not token.startswith("p") or len(token) < 2:
        raise ApiError(400, f"page_token '{token}' is not one this server gave")
    return token[1:]


class Children:
    """The runs this server launched: each is its own session (it outlives the server), but
    while the server lives it is the parent, so finished ones are waited for (no zombies)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: list[subprocess.Popen[bytes]] = []

    def add(self, launched: Launched) -> None:
        with self._lock:
            self._running = [p for p in self._running if p.poll() is None]
            if launched.process is not None:
                self._running.append(launched.process)

    def reap(self) -> None:
        with self._lock:
            self._running = [p for p in self._running if p.poll() is None]


def started(request: Request, launched: Launched) -> Launched:
    request.app.state.children.add(launched)
    return launched


def runs_page(
    store: StateStore, dag: str | None, status: RunState | None, size: int, token: str | None
) -> tuple[list[RunRecord], str | None]:
    """One page of `queries.list_runs` (newest first) and the token of the next, for the
    API and the web view alike."""
    from mflow import queries

    before = from_page_token(token)
    if before is not None and not is_run_id(before):
        raise ApiError(400, f"page_token 'p{before}' is not one this server gave")
    found = queries.list_runs(
        store, dag=dag, status=status, limit=size + 1, before=int(before) if before else None
    )
    page = found[:size]
    return page, page_token(page[-1].id) if len(found) > size else None
