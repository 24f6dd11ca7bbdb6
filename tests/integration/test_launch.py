"""Starting a run in the background (mflow.launch): the run id as soon as the run is taken, the
run in a session of its own, and a run that cannot start raised with its exit code."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from support import bash, wait_for

from mflow.errors import ExitCode
from mflow.launch import LaunchError, launch
from mflow.plan import RunRequest
from mflow.state import StoreLocation, open_store
from mflow.states import RunState


def write(path: Path, tasks: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps({"name": "bg", "tasks": tasks}))
    return path


def test_launch_returns_the_run_id_while_the_run_goes_on_in_its_own_session(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    taskfile = write(
        tmp_path / "tasks.json", [bash("slow", "until [ -e go ]; do sleep 0.02; done")]
    )
    request = RunRequest(taskfile=taskfile, state=url, log_dir=tmp_path / "logs")
    started = time.monotonic()
    launched = launch(request, cwd=tmp_path)
    assert time.monotonic() - started < 10
    assert os.getsid(launched.pid) == launched.pid  # its own session
    store = open_store(StoreLocation(url))
    try:
        assert store.get_run(launched.run_id).status is RunState.RUNNING
        with pytest.raises(LaunchError) as busy:
            launch(request, cwd=tmp_path)
        assert busy.value.exit_code is ExitCode.UNAVAILABLE
        assert "DAG 'bg' is already running" in str(busy.value)
        (tmp_path / "go").touch()
        wait_for(lambda: store.get_run(launched.run_id).status is RunState.SUCCESS, "the run")
    finally:
        store.close()


def test_a_run_that_cannot_start_is_raised_with_its_message_and_code(tmp_path: Path) -> None:
    (tmp_path / "tasks.json").write_text('{"tasks": [{"id": "a", "type": "nope"}]}')
    request = RunRequest(
        taskfile=tmp_path / "tasks.json", state=f"sqlite:///{tmp_path / 'state.db'}"
    )
    with pytest.raises(LaunchError) as error:
        launch(request, cwd=tmp_path)
    assert error.value.exit_code is ExitCode.INVALID_INPUT
    assert "unknown task type 'nope'" in str(error.value)
