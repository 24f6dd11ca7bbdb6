"""Running the `mflow` command in tests (importable as `mflow_cli`: pyproject sets pythonpath to
tests/); tests/cli/conftest.py wraps these in the `mflow` and `mflow_in_process` fixtures.

- `run_mflow(*args, cwd=, env=)`: `python -m mflow ARGS` in a subprocess, as operators run it.
- `invoke_in_process(*args, cwd=)`: the same through `mflow.cli.app` in this process, mapping
  `MflowError` to its exit code and stderr line as `mflow.cli.main` does; about a hundred times
  faster, for property-based tests. Any other exception propagates: it is a bug.
- `clean_env(home)`: this environment without the developer's MFLOW_* variables.
- `Result(code, stdout, stderr)`: what both return; unpacks and compares as a plain tuple.
- `Terminal.start(cwd, env, *args)`: `python -m mflow ARGS` on a pseudo-terminal, to see what
  an operator at a terminal sees (prompts, rich output).
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple, Protocol

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


class Result(NamedTuple):
    code: int
    stdout: str
    stderr: str

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()

    @property
    def out_lines(self) -> list[str]:
        return self.stdout.splitlines()


class MflowRunner(Protocol):
    def __call__(
        self,
        *args: str,
        cwd: Path | None = ...,
        env: Mapping[str, str] | None = ...,
        timeout: float = ...,
        input: str | None = ...,
    ) -> Result: ...


class InProcessRunner(Protocol):
    def __call__(self, *args: str, cwd: Path | None = ...) -> Result: ...


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without MFLOW_* variables, MFLOW_HOME=home, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFLOW_")}
    env["MFLOW_HOME"] = str(home)
    env.update(extra or {})
    return env


def run_mflow(
    *args: str,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float = 60,
    input: str | None = None,
) -> Result:
    """`python -m mflow ARGS` with this interpreter; stdin is closed unless `input` is given."""
    done = subprocess.run(
        [sys.executable, "-m", "mflow", *args],
        cwd=cwd,
        env=dict(env),
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(done.returncode, done.stdout, done.stderr)


@cache
def _command() -> Any:
    """The Click command behind `mflow.cli.app`; Typer rebuilds it on every CliRunner.invoke
    (45 ms, most of an in-process run), so it is built once here."""
    from typer.main import get_command

    from mflow.cli import app

    return get_command(app)


def invoke_in_process(*args: str, cwd: Path) -> Result:
    """`mflow ARGS` through the Typer app in this process, errors mapped as `cli.main` does."""
    from typer.testing import CliRunner

    from mflow.errors import MflowError

    with contextlib.chdir(cwd), CliRunner().isolation() as (out, err, _):
        code = 0
        try:
            _command().main(args=list(args), prog_name="mflow")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except MflowError as exc:
            print(str(exc), file=sys.stderr)
            code = int(exc.exit_code)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        return Result(code, out.getvalue().decode(), err.getvalue().decode())


@dataclass
class Terminal:
    """`mflow ARGS` on a pseudo-terminal, in a session of its own (so it can open no other)."""

    process: subprocess.Popen[bytes]
    fd: int
    output: bytes = b""
    seen: int = 0  # how much of `output` expect() has consumed

    @classmethod
    def start(cls, cwd: Path, env: Mapping[str, str], *args: str) -> Terminal:
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "mflow", *args],
            cwd=cwd,
            env=dict(env),
            stdin=follower,
            stdout=follower,
            stderr=follower,
            start_new_session=True,
        )
        os.close(follower)
        return cls(process, leader)

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the process closed the terminal
            return False
        self.output += chunk
        return bool(chunk)

    def expect(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while (at := self.output.find(text.encode(), self.seen)) < 0:
            if time.monotonic() > deadline or not self._read(0.1):
                raise AssertionError(f"never saw {text!r}; got {self.output!r}")
        self.seen = at + len(text)

    def send(self, line: str) -> None:
        os.write(self.fd, f"{line}\n".encode())

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.1):
            pass
        code = self.process.wait(timeout=timeout)
        os.close(self.fd)
        return code, self.output.decode(errors="replace")
