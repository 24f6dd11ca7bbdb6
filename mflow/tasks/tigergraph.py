"""The `gsql_batch` and `gsql_stream` task types: TigerGraph loading jobs.

A `gsql_batch` task runs the loading job `job_name` on `graph` in one of two ways:

- With `db` naming a `tigergraph` connection, through REST++ as TgFlow did: a token from
  `GET /requesttoken?secret=…` (skipped when the connection has a `token`), then for each file
  variable in `files` one `POST /ddl/<graph>?tag=<job>&filename=<var>` whose body is the local
  file, streamed (one POST with an empty body when there are no files). Standard library only.
  The task timeout bounds every socket operation and is passed on as `GSQL-TIMEOUT`;
  cancellation is checked between requests and between chunks of an upload, and a watchdog
  shuts the socket down while the task waits for TigerGraph's answer. (TigerGraph itself has
  no way to stop a posted load: what it already received it may still load.)
- Without `db`, through the gsql client as a process:
  `gsql -g GRAPH 'RUN LOADING JOB JOB [USING f1="/path", …]'` (file paths are TigerGraph's,
  passed as written); the client is the task's `gsql` field, else `gsql` on PATH.

Rejected lines. TigerGraph loads the valid lines of a file and counts the others (`rejectLine`,
`notEnoughToken`, `invalidJson`, `oversizeToken`; `failedConditionLine` counts lines a
loading job's WHERE left out on purpose and is not a rejection). The task SUCCEEDS when some
lines were loaded, writing a `WARNING:` line to the task log for every file with rejected
lines or invalid objects; it FAILS when a file had lines and every one was rejected, since
then the job loaded nothing from it, which is almost always a wrong format or separator.
`"error": true` in an answer fails the task with TigerGraph's message. A failed file stops
the task: the files after it are not posted.

`gsql_stream` validates like `gsql_batch` but belongs to the scheduler: in a DAG run it fails
at once with a reason that says so. Secrets (the connection's `secret` and `token`, and the
token obtained) never reach the log or the reason: every message goes through
`mflow.secrets.Masker`.
"""

from __future__ import annotations

import json
import shlex
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from mflow.errors import MflowError
from mflow.secrets import Masker
from mflow.tasks.base import (
    Command,
    TaskResult,
    TaskType,
    check_connection,
    timeout_ms,
    timeout_s,
)

if TYPE_CHECKING:
    import http.client
    import urllib.request

    from mflow.config import Datasource, Datasources, TaskSpec
    from mflow.errors import ConfigError
    from mflow.tasks.base import TaskContext

STREAM_REFUSED = "gsql_stream tasks run under the scheduler (mflow scheduler), not in a DAG run"
DEFAULT_PORT = 9000
UPLOAD_CHUNK = 256 * 1024
_REJECTED = ("rejectLine", "notEnoughToken", "invalidJson", "oversizeToken")


class GsqlBatchTask(TaskType):
    name = "gsql_batch"

    def check(
        self, spec: TaskSpec, datasources: Datasources, datasources_file: str
    ) -> Iterable[ConfigError]:
        return check_connection(
            spec, datasources, datasources_file, ("tigergraph",), required=False
        )

    def command(self, spec: TaskSpec, ctx: TaskContext) -> Command | None:
        if "db" in spec.fields:
            return None  # REST: runs in-process through run()
        argv = gsql_argv(spec)
        return Command(argv, ctx.env, spec.cwd, shlex.join(argv))

    def describe(self, spec: TaskSpec, ctx: TaskContext) -> str:
        if "db" not in spec.fields:
            return super().describe(spec, ctx)
        fields = spec.fields
        files = ", ".join(f"{k}={v}" for k, v in (fields.get("files") or {}).items())
        using = f" using {files}" if files else ""
        return (
            f"{spec.type} on {fields['db']}: loading job {fields['job_name']} "
            f"on graph {fields['graph']}{using}"
        )

    def run(self, spec: TaskSpec, ctx: TaskContext, log: TextIO) -> TaskResult:
        datasource = ctx.project.datasources[spec.fields["db"]]
        return _RestLoad(spec, datasource, ctx, log).run()


class GsqlStreamTask(GsqlBatchTask):
    name = "gsql_stream"

    def command(self, spec: TaskSpec, ctx: TaskContext) -> Command | None:
        return None

    def describe(self, spec: TaskSpec, ctx: TaskContext) -> str:
        return (
            f"gsql_stream: loading job {spec.fields['job_name']} on graph "
            f"{spec.fields['graph']} (refused: runs under the scheduler)"
        )

    def run(self, spec: TaskSpec, ctx: TaskContext, log: TextIO) -> TaskResult:
        if ctx.env.get("MFLOW_STREAM") == "1":  # started by the scheduler (its streams)
            return super().run(spec, ctx, log)
        log.write(f"{STREAM_REFUSED}\n")
        return TaskResult.failure(STREAM_REFUSED)


def gsql_argv(spec: TaskSpec) -> list[str]:
    """`gsql -g GRAPH 'RUN LOADING JOB JOB [USING f1="/path", …]'`."""
    fields = spec.fields
    client = str(fields.get("gsql", "gsql"))
    if "/" in client or client.startswith("~"):
        client = str(spec.path(client))  # a path; a bare name is looked up on PATH
    statement = f"RUN LOADING JOB {fields['job_name']}"
    files: Mapping[str, str] = fields.get("files") or {}
    if files:
        statement += " USING " + ", ".join(f'{var}="{path}"' for var, path in files.items())
    return [client, "-g", str(fields["graph"]), statement]


# --------------------------------------------------------------------------- REST++


class _Failed(Exception):
    """The load failed; the message is the task's reason (already masked)."""


class _Cancelled(Exception):
    pass


class _RestLoad:
    """One run of a loading job through REST++."""

    def __init__(
        self, spec: TaskSpec, datasource: Datasource, ctx: TaskContext, log: TextIO
    ) -> None:
        self.spec = spec
        self.datasource = datasource
        self.ctx = ctx
        self.log = log
        self.mask = Masker()
        self.connections: list[http.client.HTTPConnection] = []
        self.lock = threading.Lock()
        self.done = threading.Event()

    def run(self) -> TaskResult:
        watchdog = threading.Thread(target=self._watch, name="mflow-gsql-cancel", daemon=True)
        watchdog.start()
        try:
            self._load()
        except _Failed as exc:
            return TaskResult.failure(str(exc))
        except _Cancelled:
            self.log.write("cancelled\n")
            return TaskResult.failure("cancelled: the loading job request was abandoned")
        except MflowError as exc:  # an unset ${VAR} in the connection
            return TaskResult.failure(self.mask(str(exc)))
        finally:
            self.done.set()
            watchdog.join(timeout=2.0)
            for conn in self.connections:
                conn.close()
        return TaskResult.success()

    def _load(self) -> None:
        from mflow.secrets import expand

        fields = self.datasource.fields
        what = f"connection '{self.datasource.name}'"
        secret = expand(str(fields["secret"]), what=what) if fields.get("secret") else None
        token = expand(str(fields["token"]), what=what) if fields.get("token") else None
        self.mask.add(secret)
        self.mask.add(token)
        host = expand(str(fields["host"]), what=what).rstrip("/")
        if "://" not in host:
            host = f"{fields.get('protocol', 'http')}://{host}"
        port = expand(str(fields.get("port", DEFAULT_PORT)), what=what)
        base = host if urllib.parse.urlsplit(host).port else f"{host}:{port}"
        graph, job = str(self.spec.fields["graph"]), str(self.spec.fields["job_name"])
        self.log.write(f"TigerGraph {base}: loading job {job} on graph {graph}\n")
        if token is None:
            if secret is None:
                raise _Failed(f"{what} has neither a token nor a secret")
            token = self._request_token(base, secret)
        ddl = f"{base}/ddl/{urllib.parse.quote(graph, safe='')}"
        files: Mapping[str, str] = self.spec.fields.get("files") or {}
        if not files:
            self._post(ddl, {"tag": job}, token, None, None)
        for var, name in files.items():
            path = self.spec.path(name)
            try:
                stream = path.open("rb")
            except OSError as exc:
                raise _Failed(
                    f"cannot open {path} for file variable {var}: {exc.strerror}"
                ) from None
            with stream:
                self._post(ddl, {"tag": job, "filename": var}, token, stream, (var, str(path)))

    def _request_token(self, base: str, secret: str) -> str:
        self.log.write(f"requesting a token: GET {base}/requesttoken\n")
        query = urllib.parse.urlencode({"secret": secret})
        answer = self._call("GET", f"{base}/requesttoken?{query}", {}, None, "token request")
        if answer.get("error"):
            raise _Failed(f"TigerGraph refused the token request: {self._message(answer)}")
        results = answer.get("results")
        token = answer.get("token") or (results.get("token") if isinstance(results, dict) else None)
        if not token:
            raise _Failed("TigerGraph's answer to the token request holds no token")
        self.mask.add(str(token))
        return str(token)

    def _post(
        self,
        ddl: str,
        query: dict[str, str],
        token: str,
        stream: BinaryIO | None,
        source: tuple[str, str] | None,
    ) -> None:
        url = f"{ddl}?{urllib.parse.urlencode(query)}"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
        limit = timeout_ms(self.ctx.timeout)
        if limit is not None:
            headers["GSQL-TIMEOUT"] = str(limit)
        body: _Upload | None = None
        if stream is not None:
            size = _size(stream)
            headers["Content-Length"] = str(size)
            body = _Upload(stream, self.ctx.cancelled)
            shown = f" <- {source[1] if source else ''} ({size} bytes)"
        else:
            headers["Content-Length"] = "0"
            shown = ""
        self.log.write(f"POST {self.mask(url)}{shown}\n")
        started = time.monotonic()
        what = f"file variable {source[0]}" if source else "loading job request"
        answer = self._call("POST", url, headers, body, what)
        self.log.write(f"answered in {time.monotonic() - started:.3f} s\n")
        if answer.get("error"):
            job = query["tag"]
            raise _Failed(f"loading job {job} failed ({what}): {self._message(answer)}")
        self._statistics(answer, source[0] if source else None)

    def _call(
        self, method: str, url: str, headers: dict[str, str], body: Any, what: str
    ) -> dict[str, Any]:
        import urllib.error
        import urllib.request

        if self.ctx.cancelled.is_set():
            raise _Cancelled
        request = urllib.request.Request(url, data=body, headers=headers, method=method)
        try:
            with _opener(self._track).open(
                request, timeout=timeout_s(self.ctx.timeout)
            ) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read() or b""
            try:
                message = self._message(json.loads(raw))
            except ValueError:
                message = raw.decode("utf-8", "replace").strip()[:300] or str(exc.reason)
            raise _Failed(
                self.mask(f"{what}: TigerGraph answered HTTP {exc.code}: {message}")
            ) from None
        except _Cancelled:
            raise
        except Exception as exc:
            if self.ctx.cancelled.is_set():
                raise _Cancelled from None
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, TimeoutError):
                message = f"{what}: no answer from TigerGraph within {self.ctx.timeout:g} s"
            else:
                message = f"{what}: cannot reach TigerGraph: {reason}"
            raise _Failed(self.mask(message)) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            shown = raw[:200].decode("utf-8", "replace")
            raise _Failed(
                self.mask(f"{what}: TigerGraph's answer is not JSON: {shown!r}")
            ) from None
        if not isinstance(answer, dict):
            raise _Failed(f"{what}: unexpected answer from TigerGraph: {type(answer).__name__}")
        return answer

    def _message(self, answer: Any) -> str:
        if isinstance(answer, dict):
            text = str(answer.get("message") or answer.get("code") or "no message").strip()
        else:
            text = str(answer)
        return self.mask(text.splitlines()[0] if text else "no message")

    def _statistics(self, answer: dict[str, Any], var: str | None) -> None:
        results = answer.get("results") or []
        if not isinstance(results, list):
            results = [results]
        label = var or "job"
        for result in results:
            stats = result.get("statistics") if isinstance(result, dict) else None
            if not isinstance(stats, dict) or "validLine" not in stats:
                self.log.write(f"{label}: {self.mask(json.dumps(result))}\n")
                continue
            valid = int(stats.get("validLine") or 0)
            rejected = {k: int(stats.get(k) or 0) for k in _REJECTED if stats.get(k)}
            skipped = int(stats.get("failedConditionLine") or 0)
            total_rejected = sum(rejected.values())
            detail = ", ".join(f"{k} {v}" for k, v in rejected.items())
            line = f"{label}: {valid} valid lines, {total_rejected} rejected"
            line += f" ({detail})" if detail else ""
            self.log.write(f"{line}, {skipped} skipped by the job's WHERE\n")
            for kind in ("vertex", "edge", "deleteVertex", "deleteEdge"):
                for obj in stats.get(kind) or []:
                    self._objects(label, kind, obj)
            if total_rejected:
                self.log.write(
                    f"WARNING: {label}: {total_rejected} of {valid + total_rejected} lines "
                    f"rejected ({detail}); TigerGraph loaded the valid lines\n"
                )
                if valid == 0:
                    raise _Failed(
                        f"every line of {label} was rejected "
                        f"({total_rejected} lines: {detail}); nothing was loaded"
                    )

    def _objects(self, label: str, kind: str, obj: Any) -> None:
        if not isinstance(obj, dict):
            return
        name = obj.get("typeName", "?")
        problems = {
            k: v
            for k, v in obj.items()
            if k not in ("typeName", "validObject") and isinstance(v, int) and v
        }
        detail = ", ".join(f"{k} {v}" for k, v in problems.items())
        self.log.write(
            f"  {kind} {name}: {obj.get('validObject', 0)} valid objects"
            + (f", {detail}" if detail else "")
            + "\n"
        )
        if problems:
            self.log.write(f"WARNING: {label}: {kind} {name}: invalid objects ({detail})\n")

    # ----------------------------------------------------------------- cancellation

    def _track(self, conn: http.client.HTTPConnection) -> http.client.HTTPConnection:
        with self.lock:
            self.connections.append(conn)
        return conn

    def _watch(self) -> None:
        """Once cancelled, shut down the sockets the task is blocked on until it returns."""
        import socket

        while not self.ctx.cancelled.wait(0.1):
            if self.done.is_set():
                return
        while not self.done.is_set():
            with self.lock:
                socks = [c.sock for c in self.connections if c.sock is not None]
            for sock in socks:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.done.wait(0.2)


class _Upload:
    """A file body for http.client that stops with `_Cancelled` once the task is cancelled."""

    def __init__(self, stream: BinaryIO, cancelled: threading.Event) -> None:
        self.stream = stream
        self.cancelled = cancelled

    def read(self, size: int = -1) -> bytes:
        if self.cancelled.is_set():
            raise _Cancelled
        return self.stream.read(UPLOAD_CHUNK)


def _size(stream: BinaryIO) -> int:
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    return size


def _opener(
    track: Callable[[http.client.HTTPConnection], http.client.HTTPConnection],
) -> urllib.request.OpenerDirector:
    """urllib's opener, handing each HTTP(S) connection to `track` (to cut it on cancel)."""
    import http.client
    import ssl
    import urllib.request

    def tracked(cls: type[http.client.HTTPConnection]) -> Callable[..., Any]:
        def connect(host: str, **kwargs: Any) -> http.client.HTTPConnection:
            return track(cls(host, **kwargs))

        return connect

    context = ssl.create_default_context()

    class TrackedHTTP(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(tracked(http.client.HTTPConnection), req)

    class TrackedHTTPS(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(tracked(http.client.HTTPSConnection), req, context=context)

    return urllib.request.build_opener(TrackedHTTP, TrackedHTTPS(context=context))
