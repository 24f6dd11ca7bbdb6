"""Third-party task types: a real distribution (dist-info with an `mflow.task_types` entry
point) on a temporary path adds a type that validates with its own schema and runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = '''
"""A task type that greets: `{"type": "hello", "greeting": "..."}`."""

from mflow.tasks.base import SubprocessTaskType, TaskResult, TaskType


class HelloTask(SubprocessTaskType):
    name = "hello"
    schema = {
        "properties": {"greeting": {"type": "string", "minLength": 1},
                       "times": {"type": "integer", "minimum": 1}},
        "required": ["greeting"],
    }

    def build_argv(self, spec, ctx):
        times = spec.fields.get("times", 1)
        return ["bash", "-c", f"for i in $(seq {times}); do echo {spec.fields['greeting']}; done"]


class EchoTask(TaskType):
    """An in-process type: writes to the task log from Python."""

    name = "pyecho"

    def run(self, spec, ctx, log):
        log.write(f"pyecho says {spec.fields.get('text', '')} in run {ctx.run_id}\\n")
        return TaskResult.success()
'''


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "mflow_hello").mkdir(parents=True)
    (site / "mflow_hello" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "mflow_hello-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mflow-hello\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[mflow.task_types]\nhello = mflow_hello:HelloTask\npyecho = mflow_hello:EchoTask\n"
    )
    (info / "RECORD").write_text("")
    return site


def mflow(tmp_path: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFLOW_")}
    env["MFLOW_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "mflow", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(tmp_path: Path, *tasks: dict[str, object]) -> None:
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": list(tasks)}))


def test_plugin_task_types_run_in_a_dag(tmp_path: Path, site: Path) -> None:
    write(
        tmp_path,
        {"id": "greet", "type": "hello", "greeting": "hola", "times": 2},
        {"id": "py", "type": "pyecho", "text": "hi", "depends": ["greet"]},
    )
    result = mflow(tmp_path, site)
    assert result.returncode == 0, result.stdout + result.stderr
    greet = (tmp_path / "logs" / "master_1_task_greet.log").read_text()
    assert greet.splitlines()[1:] == ["hola", "hola"]
    assert "pyecho says hi in run 1" in (tmp_path / "logs" / "master_1_task_py.log").read_text()


def test_plugin_schema_is_enforced_by_validate(tmp_path: Path, site: Path) -> None:
    write(tmp_path, {"id": "greet", "type": "hello", "times": 0, "colour": "red"})
    result = mflow(tmp_path, site, "validate")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert "tasks.json $.tasks[0]: missing required field 'greeting' in task 'greet'" in lines
    assert any("$.tasks[0].times: must be >= 1, got 0" in line for line in lines)
    assert any("unknown field 'colour' for type 'hello'" in line for line in lines)


def test_unknown_type_error_lists_plugin_types(tmp_path: Path, site: Path) -> None:
    write(tmp_path, {"id": "x", "type": "helo", "greeting": "hi"})
    result = mflow(tmp_path, site, "validate")
    assert result.returncode == 2
    assert "unknown task type 'helo' in task 'x'" in result.stderr
    known = result.stderr.split("known: ")[1]
    assert "hello" in known and "pyecho" in known and "bash" in known


def test_a_broken_plugin_is_named_and_stops_only_the_dags_that_need_it(
    tmp_path: Path, site: Path
) -> None:
    info = site / "mflow_broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mflow-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[mflow.task_types]\nbroken = no_such_module:Task\n")
    (info / "RECORD").write_text("")

    write(tmp_path, {"id": "a", "type": "bash", "command": "true"})
    assert mflow(tmp_path, site).returncode == 0

    write(tmp_path, {"id": "b", "type": "broken"})
    result = mflow(tmp_path, site, "validate")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "task type 'broken': its plugin no_such_module:Task (mflow-broken 1.0) cannot be "
        "loaded: ModuleNotFoundError: No module named 'no_such_module'"
    ]
