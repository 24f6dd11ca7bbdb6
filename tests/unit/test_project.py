"""Loading the three files together: which files must exist, every problem of every file in
one pass, the semantic checks on top of the schema (ids, types, connections, child DAGs)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from mflow.config import Project
from mflow.errors import InvalidInput, UnknownDatasource, UnknownTaskType
from mflow.project import load_datasources, load_project

KNOWN_TYPES = "bash, command, gsql_batch, gsql_stream, mflow, oracle, runjob, spark, sql"


def write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def bash(task_id: str, *depends: str) -> dict[str, Any]:
    return {"id": task_id, "type": "bash", "command": "true", "depends": list(depends)}


def load_in(directory: Path, **files: str | None) -> Project:
    with contextlib.chdir(directory):
        return load_project(**files)


def problems_in(directory: Path, **files: str | None) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        load_in(directory, **files)
    return [str(p) for p in caught.value.problems]


# --------------------------------------------------------------------------- which files


def test_only_tasks_json_is_needed(tmp_path: Path) -> None:
    write(tmp_path / "tasks.json", {"tasks": [bash("a")]})
    project = load_in(tmp_path)
    assert list(project.dag.tasks) == ["a"]
    assert project.config.path is None and project.datasources.path is None
    assert project.taskfile_display == "tasks.json"


def test_missing_default_tasks_json_is_an_error_with_a_hint(tmp_path: Path) -> None:
    assert problems_in(tmp_path) == [
        "tasks.json: file not found (pass --taskfile FILE, or run where tasks.json is)"
    ]


@pytest.mark.parametrize(
    ("option", "flag"),
    [("taskfile", "--taskfile"), ("config", "--config"), ("datasources", "--datasources")],
)
def test_missing_named_file_is_an_error_naming_the_option(
    tmp_path: Path, option: str, flag: str
) -> None:
    write(tmp_path / "tasks.json", {"tasks": []})
    assert problems_in(tmp_path, **{option: "sub/missing.json"}) == [
        f"sub/missing.json: file not found (named by {flag}; looked for "
        f"{tmp_path}/sub/missing.json)"
    ]


def test_directory_given_as_taskfile(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    assert problems_in(tmp_path, taskfile="dags") == ["dags: is a directory, not a file"]


def test_default_config_and_datasources_are_read_when_present(tmp_path: Path) -> None:
    write(tmp_path / "tasks.json", {"tasks": []})
    write(tmp_path / "config.json", {"max_process_concurrency": 7})
    write(tmp_path / "oracle.json", {"connections": [{"name": "m", "url": "sqlite:///m.db"}]})
    project = load_in(tmp_path)
    assert project.config.max_process_concurrency == 7
    assert "m" in project.datasources


def test_problems_of_every_file_are_reported_together(tmp_path: Path) -> None:
    write(tmp_path / "config.json", {"max_process_concurrency": 0})
    write(tmp_path / "oracle.json", {"connections": [{"name": "x"}]})
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "ghost")]})
    found = problems_in(tmp_path)
    assert [line.split(" ")[0] for line in found] == ["config.json", "oracle.json", "tasks.json"]
    assert found[2] == (
        "tasks.json $.tasks[0].depends[0]: unknown task 'ghost' in task 'a' (known: a)"
    )


# --------------------------------------------------------------------------- semantic checks


def test_duplicate_ids_name_both_places(tmp_path: Path) -> None:
    write(tmp_path / "tasks.json", {"tasks": [bash("a"), bash("b"), bash("a")]})
    assert problems_in(tmp_path) == [
        "tasks.json $.tasks[2].id: duplicate task id 'a' (first defined at $.tasks[0])"
    ]


def test_unknown_task_type_lists_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path / "tasks.json", {"tasks": [{"id": "a", "type": "python", "command": "x"}]})
    with contextlib.chdir(tmp_path), pytest.raises(InvalidInput) as caught:
        load_project()
    (problem,) = caught.value.problems
    assert isinstance(problem, UnknownTaskType)
    assert str(problem) == (
        f"tasks.json $.tasks[0].type: unknown task type 'python' in task 'a' (known: {KNOWN_TYPES})"
    )


def test_misspelt_task_type_suggests_the_close_one(tmp_path: Path) -> None:
    write(tmp_path / "tasks.json", {"tasks": [{"id": "a", "type": "bsh", "command": "x"}]})
    assert problems_in(tmp_path) == [
        "tasks.json $.tasks[0].type: unknown task type 'bsh' in task 'a' "
        f"(did you mean 'bash'? known: {KNOWN_TYPES})"
    ]


def test_a_type_that_is_not_a_string_is_reported_once(tmp_path: Path) -> None:
    write(tmp_path / "tasks.json", {"tasks": [{"id": "a", "type": 5}, {"id": "b"}]})
    assert problems_in(tmp_path) == [
        "tasks.json $.tasks[0].type: expected string, got an integer in task 'a'",
        "tasks.json $.tasks[1]: missing required field 'type' in task 'b'",
    ]


def test_sql_task_naming_an_unknown_connection(tmp_path: Path) -> None:
    write(tmp_path / "oracle.json", {"connections": [{"name": "dwh", "url": "sqlite:///d.db"}]})
    task = {"id": "load", "type": "sql", "command": "select 1", "db": "dhw"}
    write(tmp_path / "tasks.json", {"tasks": [task]})
    with contextlib.chdir(tmp_path), pytest.raises(InvalidInput) as caught:
        load_project()
    (problem,) = caught.value.problems
    assert isinstance(problem, UnknownDatasource)
    assert str(problem) == (
        "tasks.json $.tasks[0].db: unknown connection 'dhw' in task 'load' "
        "(known: dwh; in oracle.json)"
    )


def test_unknown_connection_when_the_datasources_file_is_absent(tmp_path: Path) -> None:
    task = {"id": "load", "type": "oracle", "file": "x.sql", "db": "dwh"}
    write(tmp_path / "tasks.json", {"tasks": [task]})
    assert problems_in(tmp_path) == [
        "tasks.json $.tasks[0].db: unknown connection 'dwh' in task 'load' "
        "(known: none; oracle.json was not found)"
    ]


def test_connection_of_the_wrong_kind(tmp_path: Path) -> None:
    conn = {"name": "tg", "kind": "tigergraph", "host": "h"}
    write(tmp_path / "oracle.json", {"connections": [conn]})
    task = {"id": "q", "type": "sql", "command": "select 1", "db": "tg"}
    write(tmp_path / "tasks.json", {"tasks": [task]})
    assert problems_in(tmp_path) == [
        "tasks.json $.tasks[0].db: connection 'tg' is a tigergraph connection, not oracle or sql "
        "in task 'q'"
    ]


def test_duplicate_connection_names(tmp_path: Path) -> None:
    conn = {"name": "db", "url": "sqlite:///x.db"}
    write(tmp_path / "oracle.json", {"connections": [conn, conn]})
    write(tmp_path / "tasks.json", {"tasks": []})
    assert problems_in(tmp_path) == [
        "oracle.json $.connections[1].name: duplicate connection name 'db' "
        "(first defined at $.connections[0])"
    ]
    with pytest.raises(InvalidInput):
        load_datasources(tmp_path / "oracle.json")


def test_child_dag_taskfile_resolves_against_the_parent_file(
    tmp_path: Path,
) -> None:
    write(tmp_path / "dags" / "child.json", {"tasks": [bash("c")]})
    parent = {"tasks": [{"id": "kid", "type": "mflow", "taskfile": "child.json"}]}
    write(tmp_path / "dags" / "parent.json", parent)
    assert list(load_in(tmp_path, taskfile="dags/parent.json").dag.tasks) == ["kid"]


def test_child_dag_that_does_not_exist(tmp_path: Path) -> None:
    parent = {"tasks": [{"id": "kid", "type": "mflow", "taskfile": "nope.json"}]}
    write(tmp_path / "dags" / "parent.json", parent)
    assert problems_in(tmp_path, taskfile="dags/parent.json") == [
        "dags/parent.json $.tasks[0].taskfile: taskfile 'nope.json' not found in task 'kid' "
        f"(looked for {tmp_path}/dags/nope.json)"
    ]


def test_graph_problems_show_even_when_the_schema_fails(tmp_path: Path) -> None:
    doc = {"tasks": [{**bash("a", "b"), "timeout": "soon"}, bash("b", "a")]}
    write(tmp_path / "tasks.json", doc)
    assert problems_in(tmp_path) == [
        "tasks.json $.tasks[0].timeout: invalid value 'soon' in task 'a' (a duration is seconds "
        "or a number followed by s, m, h or d, e.g. 30m)",
        "tasks.json $.tasks[0].depends[0]: dependency cycle a -> b -> a "
        "(each task depends on the next)",
    ]


def test_a_place_the_schema_flagged_gets_no_second_message(tmp_path: Path) -> None:
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "not valid")]})
    assert problems_in(tmp_path) == [
        "tasks.json $.tasks[0].depends[0]: invalid value 'not valid' in task 'a' "
        "(ids are 1 to 200 letters, digits, '_', '.' and '-')"
    ]


def test_problems_of_the_seed_example(tmp_path: Path) -> None:
    seed = Path(__file__).resolve().parents[2] / "examples" / "seed"
    found = problems_in(seed)
    assert found == [
        "tasks.json $.tasks[5].depends[0]: unknown task 'tarea5' in task 'tarea6' (known: "
        "tarea1, tarea2, tarea3, tarea4, sp1_tickets, tarea6, tarea7, sp1, siper_desvio141)"
    ]


def test_a_dependency_listed_twice_is_one_edge(tmp_path: Path) -> None:
    write(tmp_path / "tasks.json", {"tasks": [bash("a"), bash("b", "a", "a"), bash("c", "a", "b")]})
    project = load_in(tmp_path)
    assert project.dag.edges == 3


def test_loading_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path) -> None:
    import gc

    write(tmp_path / "tasks.json", {"tasks": [bash("a")]})
    assert gc.isenabled()
    load_in(tmp_path)
    assert gc.isenabled()
    write(tmp_path / "tasks.json", "[")
    with pytest.raises(InvalidInput):
        load_in(tmp_path)
    assert gc.isenabled()
