"""Fixtures that run the `mflow` command (helpers in tests/mflow_cli.py).

- ``mflow``: ``mflow("validate", "--taskfile", "x.json")`` runs ``python -m mflow ...`` in a
  subprocess, in ``tmp_path`` with a clean environment (none of the developer's ``MFLOW_*``
  variables, ``MFLOW_HOME`` inside ``tmp_path``, stdin closed) and returns
  ``Result(code, stdout, stderr)``; ``cwd=``, ``env=`` (added to the clean one), ``timeout=``
  and ``input=`` change one call. ``code, out, err = mflow("validate")`` works too.
- ``mflow_env``: that clean environment, for a process a test starts itself (``Popen``,
  ``Terminal``) that must see the same ``MFLOW_HOME`` as the ``mflow`` fixture.
- ``mflow_in_process``: the same call through ``mflow.cli.app`` in this process (``cwd=``
  only): fast enough for hypothesis; an exception other than ``MflowError`` propagates.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from mflow_cli import (
    InProcessRunner,
    MflowRunner,
    Result,
    clean_env,
    invoke_in_process,
    run_mflow,
)


@pytest.fixture
def mflow_env(tmp_path: Path) -> dict[str, str]:
    """The environment `mflow` runs in: no MFLOW_* of the developer's, MFLOW_HOME in tmp_path."""
    return clean_env(tmp_path / "mflow-home")


@pytest.fixture
def mflow(tmp_path: Path, mflow_env: dict[str, str]) -> MflowRunner:
    """Run the real `mflow` command in a subprocess (cwd: tmp_path unless told otherwise)."""

    def run(
        *args: str,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60,
        input: str | None = None,
    ) -> Result:
        return run_mflow(
            *args,
            cwd=cwd or tmp_path,
            env={**mflow_env, **(env or {})},
            timeout=timeout,
            input=input,
        )

    return run


@pytest.fixture
def mflow_in_process(tmp_path: Path) -> InProcessRunner:
    """Run `mflow ARGS` in this process (cwd: tmp_path unless told otherwise)."""

    def run(*args: str, cwd: Path | None = None) -> Result:
        return invoke_in_process(*args, cwd=cwd or tmp_path)

    return run
