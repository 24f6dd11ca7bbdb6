"""A real `mflow serve` for tests (importable as `serving`: pyproject puts tests/ on the path):
`with serve(cwd, env, "--state", url) as server: server.call("GET", "/v1/runs")`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import free_port
from support import wait_for

TOKEN = "t0ken-for-tests-0123456789"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = TOKEN
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                raw = answer.read()
                status = answer.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode()


@contextmanager
def serve(
    cwd: Path, env: dict[str, str], *args: str, token: str | None = TOKEN
) -> Iterator[Server]:
    port = free_port()
    env = {**env, **({"MFLOW_API_TOKEN": token} if token else {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "mflow", "serve", "--port", str(port), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = Server(f"http://127.0.0.1:{port}", process)
    try:

        def up() -> bool:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                return server.call("GET", "/healthz")[0] == 200
            except OSError:
                return False

        wait_for(up, "mflow serve to answer", timeout=30)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
