"""A stub TigerGraph REST++ server for tests: `/requesttoken` and `/ddl/<graph>`.

A real HTTP server (`ThreadingHTTPServer` on a free port, in a thread) that speaks the two
endpoints a `gsql_batch` task uses, with TigerGraph's answer shapes:

- `GET /requesttoken?secret=S`: `{"error": false, "results": {"token": T}, ...}` when S is the
  stub's secret, else `{"error": true, "message": ...}` (the message echoes the secret, as a
  careless server might: the task must mask it).
- `POST /ddl/<graph>?tag=JOB[&filename=VAR]` with `Authorization: Bearer T`: 401 echoing the
  token when it is wrong; `"error": true` when JOB is not one of `jobs`; otherwise statistics
  in TigerGraph 3.x's shape, where every non-empty line of the body holding "BAD" counts as
  rejected (`rejectLine`) and the others as valid.

Every request is recorded (method, path, query, headers, body). `hold` makes `/ddl` wait
until `release` is set (or 30 s), to test cancellation.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class TigerGraphStub:
    secret: str = "stub-secret-Zq81"
    token: str = "stub-token-7Hk2p"
    graph: str = "social"
    jobs: set[str] = field(default_factory=lambda: {"load_people"})
    hold: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def answer(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict[str, Any]]:
        split = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(split.query))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        self.requests.append(
            Recorded(
                handler.command,
                split.path,
                query,
                {k.lower(): v for k, v in handler.headers.items()},
                body,
            )
        )
        if handler.command == "GET" and split.path == "/requesttoken":
            if query.get("secret") != self.secret:
                message = f"The secret {query.get('secret')} is not valid."
                return 200, {"error": True, "code": "REST-1001", "message": message}
            return 200, {
                "code": "REST-0000",
                "error": False,
                "message": "Generate new token successfully.",
                "results": {"token": self.token},
            }
        if handler.command == "POST" and split.path.startswith("/ddl/"):
            if handler.headers.get("Authorization") != f"Bearer {self.token}":
                given = (handler.headers.get("Authorization") or "").removeprefix("Bearer ")
                message = f"Access Denied because the input token = '{given}' is invalid"
                return 401, {"error": True, "code": "REST-10016", "message": message}
            if self.hold:
                self.release.wait(30)
            graph = urllib.parse.unquote(split.path.removeprefix("/ddl/"))
            if graph != self.graph:
                return 200, {"error": True, "message": f"Graph '{graph}' does not exist."}
            if query.get("tag") not in self.jobs:
                message = f"The loading job '{query.get('tag')}' does not exist."
                return 200, {"error": True, "code": "REST-30000", "message": message}
            lines = [ln for ln in body.decode().splitlines() if ln.strip()]
            rejected = sum(1 for ln in lines if "BAD" in ln)
            valid = len(lines) - rejected
            return 200, {
                "version": {"edition": "enterprise", "api": "v2", "schema": 0},
                "error": False,
                "message": "",
                "results": [
                    {
                        "sourceFileName": "Online_POST",
                        "statistics": {
                            "validLine": valid,
                            "rejectLine": rejected,
                            "failedConditionLine": 0,
                            "notEnoughToken": 0,
                            "invalidJson": 0,
                            "oversizeToken": 0,
                            "vertex": [
                                {
                                    "typeName": "person",
                                    "validObject": valid,
                                    "noIdFound": 0,
                                    "invalidAttribute": 0,
                                    "invalidPrimaryId": 0,
                                    "invalidSecondaryId": 0,
                                    "incorrectFixedBinaryLength": 0,
                                }
                            ],
                            "edge": [],
                            "deleteVertex": [],
                            "deleteEdge": [],
                        },
                    }
                ],
                "code": "REST-0000",
            }
        return 404, {"error": True, "message": f"Endpoint is not found: {split.path}"}


@contextmanager
def running(stub: TigerGraphStub | None = None) -> Iterator[TigerGraphStub]:
    """Serve `stub` (a fresh one by default) on 127.0.0.1 and a free port while in the block."""
    stub = stub or TigerGraphStub()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            try:
                status, payload = stub.answer(self)
            except (ConnectionError, OSError):
                return  # the client went away (a cancelled task)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (ConnectionError, OSError):
                pass

        do_GET = _reply
        do_POST = _reply

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    stub.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
