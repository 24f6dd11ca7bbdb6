"""What starting `mflow` costs: the packages each command imports, and option values coerced
without pydantic exactly as typer itself would (mflow.cli.values)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mflow_cli import clean_env, invoke_in_process

HEAVY = {
    "pydantic", "rich", "sqlalchemy", "networkx", "jsonschema", "fastjsonschema", "yaml", "kazoo"
}  # fmt: skip

# `python -c` this with the file to write to and mflow's arguments: it runs `python -m mflow`
# and records the top-level packages the process imported.
RECORD_IMPORTS = """
import json, runpy, sys
record, sys.argv = sys.argv[1], ["mflow", *sys.argv[2:]]
try:
    runpy.run_module("mflow", run_name="__main__")
except SystemExit:
    pass
with open(record, "w") as f:
    json.dump(sorted(sys.modules), f)
"""


def imported_by(tmp_path: Path, *args: str) -> set[str]:
    """The packages of HEAVY that `mflow ARGS` imports, run in tmp_path with a 1-task DAG."""
    return HEAVY & {name.partition(".")[0] for name in modules_imported(tmp_path, *args)}


def modules_imported(tmp_path: Path, *args: str) -> set[str]:
    """Every module `mflow ARGS` imports, run in tmp_path with a 1-task DAG."""
    (tmp_path / "tasks.json").write_text(
        json.dumps({"tasks": [{"id": "a", "type": "bash", "command": "true"}]})
    )
    record = tmp_path / "imports.json"
    done = subprocess.run(
        [sys.executable, "-c", RECORD_IMPORTS, str(record), *args],
        cwd=tmp_path,
        env=clean_env(tmp_path / "home"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(record.read_text()))


def test_help_imports_no_heavy_package(tmp_path: Path) -> None:
    assert imported_by(tmp_path, "--help") == set()
    assert imported_by(tmp_path, "run", "--help") == set()


def test_validate_and_dry_run_import_only_the_fast_schema_checker(tmp_path: Path) -> None:
    assert imported_by(tmp_path, "validate") == {"fastjsonschema"}
    assert imported_by(tmp_path, "--dry-run") == {"fastjsonschema"}


def test_a_dag_of_built_in_types_does_not_look_for_plugins(tmp_path: Path) -> None:
    # Finding the plugins' entry points reads every installed distribution's metadata.
    assert "importlib.metadata" not in modules_imported(tmp_path, "validate")
    assert "importlib.metadata" not in modules_imported(tmp_path, "--dry-run")


def test_a_run_in_a_pipe_imports_no_pydantic_networkx_rich_or_jsonschema(tmp_path: Path) -> None:
    found = imported_by(tmp_path, "--quiet")
    assert not found & {"pydantic", "networkx", "rich", "jsonschema", "yaml", "kazoo"}, found


def commands() -> Iterator[tuple[str, Any]]:
    """Every command and group of the CLI, with its path (`mflow db init`)."""
    from typer.main import get_command

    from mflow.cli import app

    def walk(path: str, command: Any) -> Iterator[tuple[str, Any]]:
        yield path, command
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(f"{path} {name}", sub)

    yield from walk("mflow", get_command(app))


def test_every_command_coerces_without_pydantic() -> None:
    from mflow.cli.values import MflowCommand, MflowGroup

    for path, command in commands():
        assert isinstance(command, MflowGroup | MflowCommand), path


VALUES = [
    "3", "0", "1", "10", "x", "", " 3", "03", "+3", "3.0", "1_0", "-1", "99999999999999999999",
    "tree", "dot", "DOT", "json", "sqlite", "oracle", "nope", "a b", "-", "RUN_ID:TASK",
    "/nonexistent/file.json", "tasks.json", ".", "last",
]  # fmt: skip


def coerce(coercion: Any, value: Any, param: Any, ctx: Any) -> tuple[str, Any]:
    try:
        return "value", coercion.coerce(value, param=param, ctx=ctx)
    except Exception as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("path", [path for path, _ in commands()])
def test_option_values_come_out_as_typer_itself_makes_them(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer._coercion import build_runtime_param

    from mflow.cli.values import PlainValues

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tasks.json").write_text("{}")
    command = dict(commands())[path]
    ctx = typer.Context(command)
    params = command.get_params(ctx)  # with the --help flag
    assert params
    for param in params:
        if not PlainValues.handles(param):
            continue
        ours = PlainValues(param)
        typers = build_runtime_param(param.type_descriptor)
        for value in [*VALUES, param.default, True, False]:
            got = coerce(ours, value, param, ctx)
            assert got == coerce(typers, value, param, ctx), (param.name, value)
            assert type(got[1]) is type(coerce(typers, value, param, ctx)[1]), (param.name, value)


def test_a_bad_value_gets_typers_message(tmp_path: Path) -> None:
    result = invoke_in_process("-j", "0", "--dry-run", cwd=tmp_path)
    assert result.code == 2
    assert (
        "Invalid value for '--concurrency' / '-j': Input should be greater than or equal to 1"
        in (result.stderr)
    )
