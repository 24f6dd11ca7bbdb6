"""Schema problems: one message per problem naming file, JSON path and task, in words an
operator can act on, in file order, and never quoting a secret."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from mflow import schema
from mflow.errors import InvalidInput
from mflow.project import load_project

PASSWORD = "Tr0ub4dor&3"
ID_HINT = "(ids are 1 to 200 letters, digits, '_', '.' and '-')"


def problems(
    tmp_path: Path,
    tasks: Any = None,
    *,
    config: Any = None,
    datasources: Any = None,
    name: str = "tasks.json",
) -> list[str]:
    """The lines `mflow validate` would print for these documents ([] when valid)."""

    def write(file: str, doc: Any) -> Path:
        path = tmp_path / file
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        return path

    write(name, tasks if tasks is not None else {"tasks": []})
    if config is not None:
        write("config.json", config)
    if datasources is not None:
        write("oracle.json", datasources)
    try:
        with contextlib.chdir(tmp_path):  # files named as the user would: relative
            load_project(taskfile=name)
    except InvalidInput as exc:
        return [str(p) for p in exc.problems]
    return []


def one(tmp_path: Path, *tasks: dict[str, Any], **kwargs: Any) -> str:
    found = problems(tmp_path, {"tasks": list(tasks)}, **kwargs)
    assert len(found) == 1, found
    return found[0]


BASH_FIELDS = (
    "id, type, depends, retries, retry_delay, timeout, env, cwd, description, queue, command"
)


def test_unknown_field_names_the_task_and_suggests_the_right_name(tmp_path: Path) -> None:
    task = {"id": "a", "type": "bash", "command": "x", "depend": ["b"]}
    assert one(tmp_path, task) == (
        "tasks.json $.tasks[0]: unknown field 'depend' for type 'bash' in task 'a' "
        f"(did you mean 'depends'? allowed: {BASH_FIELDS})"
    )


def test_a_field_of_another_type_is_unknown(tmp_path: Path) -> None:
    task = {"id": "a", "type": "bash", "command": "x", "db": "main"}
    assert one(tmp_path, task) == (
        f"tasks.json $.tasks[0]: unknown field 'db' for type 'bash' in task 'a' (allowed: "
        f"{BASH_FIELDS})"
    )


def test_unknown_top_level_field(tmp_path: Path) -> None:
    assert problems(tmp_path, {"task": [], "tasks": []}) == [
        "tasks.json $: unknown field 'task' (did you mean 'tasks'? allowed: defaults, "
        "description, name, tasks)"
    ]


def test_spark_task_without_ingestor_file(tmp_path: Path) -> None:
    task = {"id": "sp", "type": "spark", "master": "yarn"}
    assert one(tmp_path, task) == (
        "tasks.json $.tasks[0]: missing required field 'ingestor-file' in task 'sp'"
    )


def test_field_names_that_are_not_identifiers_are_quoted_in_the_path(tmp_path: Path) -> None:
    task = {"id": "sp", "type": "spark", "ingestor-file": 5}
    assert one(tmp_path, task) == (
        "tasks.json $.tasks[0][\"ingestor-file\"]: expected string, got an integer in task 'sp'"
    )


@pytest.mark.parametrize("field", ["timeout", "retry_delay"])
@pytest.mark.parametrize("value", ["5x", "1 h", "h", "-1m", ""])
def test_invalid_duration_strings(tmp_path: Path, field: str, value: str) -> None:
    task = {"id": "a", "type": "bash", "command": "x", field: value}
    assert one(tmp_path, task) == (
        f"tasks.json $.tasks[0].{field}: invalid value '{value}' in task 'a' (a duration is "
        "seconds or a number followed by s, m, h or d, e.g. 30m)"
    )


def test_negative_duration_number(tmp_path: Path) -> None:
    task = {"id": "a", "type": "bash", "command": "x", "timeout": -5}
    assert one(tmp_path, task).startswith("tasks.json $.tasks[0].timeout: invalid value -5 ")


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"id": 5, "type": "bash", "command": "x"},
         f"$.tasks[0].id: expected string, got an integer {ID_HINT}"),
        ({"id": "a b", "type": "bash", "command": "x"},
         f"$.tasks[0].id: invalid value 'a b' in task 'a b' {ID_HINT}"),
        ({"id": "a", "type": "bash", "command": "x", "depends": "b"},
         "$.tasks[0].depends: expected array, got a string in task 'a'"),
        ({"id": "a", "type": "bash", "command": "x", "retries": True},
         "$.tasks[0].retries: expected integer, got a boolean in task 'a'"),
        ({"id": "a", "type": "bash", "command": "x", "retries": -1},
         "$.tasks[0].retries: must be >= 0, got -1 in task 'a'"),
        ({"id": "a", "type": "bash", "command": ""},
         "$.tasks[0].command: must not be empty in task 'a'"),
        ({"id": "a", "type": 5},
         "$.tasks[0].type: expected string, got an integer in task 'a'"),
        ({"id": "a", "command": "x"},
         "$.tasks[0]: missing required field 'type' in task 'a'"),
        ({"id": "a", "type": "spark", "ingestor-file": "j", "verbose": "maybe"},
         "$.tasks[0].verbose: invalid value 'maybe' in task 'a' "
         "(one of: \"yes\", \"no\", true, false)"),
        ({"id": "a", "type": "bash", "command": "x", "env": {"A": None}},
         "$.tasks[0].env: invalid value {\"A\": null} in task 'a' (env is an object {\"NAME\": "
         "\"value\"} or a list of {\"key\": ..., \"value\": ...})"),
        ({"id": "a", "type": "sql", "db": "d", "command": "x", "file": "y"},
         "$.tasks[0]: invalid value {\"id\": \"a\", \"type\": \"sql\", \"db\": \"d\", \"command\": "
         "\"x\", \"fi... in task 'a' "
         "(a sql/oracle task has exactly one of command or file, and db)"),
        ({"type": "gsql_batch", "id": "g"},
         "$.tasks[0]: missing required fields 'graph', 'job_name' in task 'g'"),
    ],
)  # fmt: skip
def test_wrong_values_get_one_clear_message(
    tmp_path: Path, task: dict[str, Any], message: str
) -> None:
    assert one(tmp_path, task) == f"tasks.json {message}"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "$: expected object, got an array"),
        ("null", "$: expected object, got null"),
        ({"tasks": {}}, "$.tasks: expected array, got an object"),
        ({}, "$: missing required field 'tasks'"),
        ({"name": "x y", "tasks": []},
         "$.name: invalid value 'x y' (ids are 1 to 200 letters, digits, '_', '.' and '-')"),
        ({"tasks": [], "defaults": {"depends": ["a"]}},
         "$.defaults: unknown field 'depends' (allowed: cwd, env, retries, retry_delay, timeout)"),
    ],
)  # fmt: skip
def test_document_shape_problems(tmp_path: Path, document: Any, message: str) -> None:
    text = document if isinstance(document, str) else json.dumps(document)
    assert problems(tmp_path, text) == [f"tasks.json {message}"]


def test_tasks_that_are_not_objects_get_one_message_each(tmp_path: Path) -> None:
    assert problems(tmp_path, {"tasks": [None, 3, "a"]}) == [
        "tasks.json $.tasks[0]: expected object, got null",
        "tasks.json $.tasks[1]: expected object, got an integer",
        "tasks.json $.tasks[2]: expected object, got a string",
    ]


def test_yaml_dates_and_booleans_are_named_as_such(tmp_path: Path) -> None:
    text = (
        "tasks:\n"
        "  - {id: 2026-01-31, type: bash, command: x}\n"
        "  - {id: no, type: bash, command: y}\n"
    )
    assert problems(tmp_path, text, name="tasks.yaml") == [
        "tasks.yaml $.tasks[0].id: expected string, got a date (quote it) (ids are 1 to 200 "
        "letters, digits, '_', '.' and '-')",
        "tasks.yaml $.tasks[1].id: expected string, got a boolean (ids are 1 to 200 letters, "
        "digits, '_', '.' and '-')",
    ]


def test_problems_come_in_file_order(tmp_path: Path) -> None:
    doc = {
        "tasks": [
            {"id": "a", "type": "bash", "timeout": "x", "command": "x", "retries": "y"},
            {"id": "b", "type": "bash", "command": 1},
        ],
        "name": "bad name",
    }
    # The document's own problems first, then each task's, in the order of the file.
    assert [p.split(":")[0] for p in problems(tmp_path, doc)] == [
        "tasks.json $.name",
        "tasks.json $.tasks[0].timeout",
        "tasks.json $.tasks[0].retries",
        "tasks.json $.tasks[1].command",
    ]


# --------------------------------------------------------------------------- config.json


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"max_process_concurrency": 0}, "$.max_process_concurrency: must be >= 1, got 0"),
        ({"max_process_concurrency": "3"},
         "$.max_process_concurrency: expected integer, got a string"),
        ({"check_new_config_interval": 0}, "$.check_new_config_interval: must be > 0, got 0"),
        ({"check_new_config_interval": 10**30},
         f"$.check_new_config_interval: must be <= 86400, got {10**30}"),
        ({"log_directory": ""}, "$.log_directory: must not be empty"),
        ({"max_concurrency": 3},
         "$: unknown field 'max_concurrency' (did you mean 'max_process_concurrency'? allowed: "
         "broker, check_new_config_interval, env, executor, log_directory, "
         "max_process_concurrency, result_backend, retries, retry_delay, state, timeout, "
         "visibility_timeout)"),
    ],
)  # fmt: skip
def test_config_problems(tmp_path: Path, config: Any, message: str) -> None:
    assert problems(tmp_path, config=config) == [f"config.json {message}"]


# --------------------------------------------------------------------------- secrets


def connection(**fields: Any) -> dict[str, Any]:
    return {"connections": [{"name": "db", **fields}]}


@pytest.mark.parametrize(
    "datasources",
    [
        connection(connection_string="h:1/s", user="u", password=[PASSWORD]),
        connection(connection_string="h:1/s", user="u", password={"p": PASSWORD}),
        connection(connection_string="h:1/s", user=5, password=PASSWORD),  # error beside it
        connection(user="u", password=PASSWORD),  # no connection_string: the object is shown
        connection(password=PASSWORD, url="sqlite:///x.db", connection_string="h:1/s"),
        connection(url=f"postgresql+psycopg://u:{PASSWORD}@h/db", connection_string="h:1/s"),
        connection(kind="tigergraph", host="h", secret=[PASSWORD], token={"t": PASSWORD}),
        connection(kind="tigergraph", secret=PASSWORD, token=PASSWORD),
        connection(connection_string="h:1/s", encrypted_password=[PASSWORD]),
        connection(connection_string="h:1/s", passwd=PASSWORD),
    ],
)
def test_datasource_problems_never_show_a_password(tmp_path: Path, datasources: Any) -> None:
    found = problems(tmp_path, datasources=datasources)
    assert found, "the document should be invalid"
    assert all(line.startswith("oracle.json $.connections[0]") for line in found), found
    assert not any(PASSWORD in line for line in found), found


def test_connection_without_a_form_says_what_a_connection_needs(tmp_path: Path) -> None:
    found = problems(tmp_path, datasources=connection(user="u", password=PASSWORD))
    assert found == [
        'oracle.json $.connections[0]: invalid value {"name": "db", "user": "u", "password": '
        '"(hidden)"} (a connection has connection_string (Oracle), or url, or kind '
        '"tigergraph" with host)'
    ]


def test_secret_env_values_in_a_broken_task_are_not_shown(tmp_path: Path) -> None:
    task = {
        "id": "a",
        "type": "bash",
        "command": "x",
        "env": [{"key": "DB_PASSWORD", "value": PASSWORD}, {"key": "X"}],
    }
    message = one(tmp_path, task)
    assert message.startswith("tasks.json $.tasks[0].env: invalid value")
    assert PASSWORD not in message


def test_show_redacts_secrets_nested_and_in_urls() -> None:
    shown = schema._show({"a": {"token": "t0k"}, "url": "oracle+oracledb://u:pw@h/s"}, "x")
    assert "t0k" not in shown and ":pw@" not in shown
    assert schema._show("anything", "password") == "(hidden)"


def test_show_survives_a_document_that_contains_itself() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert schema._show(loop, "x") == '[[[["..."]]]]'


def test_validator_kinds_are_the_three_files() -> None:
    for kind in ("config", "tasks", "datasources"):
        assert schema.raw_schema(kind)["$schema"].endswith("draft/2020-12/schema")


def test_every_builtin_type_has_a_schema_branch() -> None:
    from mflow.tasks.registry import BUILTIN

    assert set(schema.builtin_type_schemas()) == set(BUILTIN)
