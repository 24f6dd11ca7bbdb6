"""Running the `mflow` command in tests (importable as `mflow_cli`: pyproject sets pythonpath to
tests/); tests/cli/conftest.py wraps these in the `mflow` and `mflow_in_process` fixtures.

- `run_mflow(*args, cwd=, env=)`: `python -m mflow ARGS` in a subprocess, as operators run it.
- `invoke_in_process(*args, cwd=)`: the same through `mflow.cli.app` in this process, mapping
  `MflowError` to its exit code and stderr line as `mflow.cli.main` does; about a hundred times
  faster, for property-based tests. Any other exception propagates: it is a bug.
- `clean_env(home)`: this environment without the developer's MFLOW_* variables.
- `Result(code, stdout, stderr)`: what both return; unpacks and compares as a plain tuple.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Mapping
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
