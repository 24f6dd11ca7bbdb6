"""Reading files into frozen dataclasses: parsing (JSON and YAML, errors with line and column),
defaults, precedence, the seed's spellings, and paths relative to the file naming them."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mflow import config as cfg
from mflow.errors import ConfigError
from mflow.project import load_config, load_project


def write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def bash(task_id: str, *depends: str, **fields: Any) -> dict[str, Any]:
    task = {"id": task_id, "type": "bash", "command": f"echo {task_id}", **fields}
    if depends:
        task["depends"] = list(depends)
    return task


def read_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        cfg.read_document(path, path.name)
    return str(caught.value)


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90.0), (2.5, 2.5), ("90", 90.0), ("30s", 30.0), ("30m", 1800.0), ("2h", 7200.0),
     ("1d", 86400.0), ("1.5h", 5400.0), (0, 0.0)],
)  # fmt: skip
def test_parse_duration_reads_seconds_and_units(value: Any, seconds: float) -> None:
    assert cfg.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["abc", "5x", "1 h", "-3", "", "h", -1, True])
def test_parse_duration_rejects_what_is_not_a_duration(value: Any) -> None:
    with pytest.raises(ValueError):
        cfg.parse_duration(value)


def test_parse_duration_of_an_integer_beyond_float_range_is_infinite() -> None:
    assert cfg.parse_duration(10**400) == math.inf


# --------------------------------------------------------------------------- parsing


def test_malformed_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "tasks.json", '{\n  "tasks": [\n    {"id": "a",}\n  ]\n}\n')
    assert read_error(path) == (
        "tasks.json: invalid JSON at line 3, column 16: Expecting property name enclosed in "
        "double quotes"
    )


def test_malformed_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "tasks.yaml", "tasks:\n  - id: a\n    type: bash\n   command: x\n")
    assert read_error(path) == (
        "tasks.yaml: invalid YAML at line 4, column 4: did not find expected '-' indicator"
    )


def test_yaml_indented_with_a_tab_says_so(tmp_path: Path) -> None:
    path = write(tmp_path / "tasks.yaml", "tasks:\n\t- id: a\n")
    assert read_error(path) == (
        "tasks.yaml: invalid YAML at line 2, column 1: found character that cannot start any "
        "token (a tab: YAML indents with spaces only)"
    )


@pytest.mark.parametrize("name", ["tasks.json", "tasks.yaml"])
@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_empty_file_is_reported_as_empty(tmp_path: Path, name: str, content: str) -> None:
    assert read_error(write(tmp_path / name, content)) == f"{name}: file is empty"


def test_binary_file_is_reported_with_the_offending_byte(tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_bytes(b'{"tasks":\n []}\xff\x00')
    assert read_error(path) == "tasks.json: not a UTF-8 text file: byte 0xff at line 2, column 5"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "tasks.json").mkdir()
    assert read_error(tmp_path / "tasks.json") == "tasks.json: is a directory, not a file"


def test_missing_file_is_reported(tmp_path: Path) -> None:
    assert read_error(tmp_path / "nope.json") == "nope.json: file not found"


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    path.write_bytes('\ufeff{"tasks": []}'.encode())
    assert cfg.read_document(path) == {"tasks": []}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"timeout": NaN}', "invalid JSON at line 1, column 13: NaN is not a finite number"),
        ('{"a": "NaN",\n "b": -Infinity}',
         "invalid JSON at line 2, column 7: -Infinity is not a finite number"),
        ('{"timeout": 1e400}', "invalid JSON at line 1, column 13: 1e400 is not a finite number"),
    ],
)  # fmt: skip
def test_json_numbers_must_be_finite(tmp_path: Path, text: str, message: str) -> None:
    assert read_error(write(tmp_path / "c.json", text)) == f"c.json: {message}"


def test_json_integer_too_long_to_read_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path / "c.json", '{"timeout": ' + "9" * 5000 + "}")
    assert read_error(path).startswith("c.json: invalid JSON: Exceeds the limit")


def test_json_nested_too_deeply_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path / "c.json", "[" * 100_000 + "]" * 100_000)
    assert read_error(path) == "c.json: invalid JSON: nested too deeply"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tasks:\n  - id: a\n    5: x\n", 'line 3, column 5: key 5 is not a string (write "5")'),
        ("env:\n  yes: 1\n", 'line 2, column 3: key yes is not a string (write "yes")'),
        ("timeout: .inf\n", "line 1, column 10: .inf is not a finite number"),
        ("timeout: .nan\n", "line 1, column 10: .nan is not a finite number"),
    ],
)
def test_yaml_that_json_cannot_hold_is_refused(tmp_path: Path, text: str, message: str) -> None:
    assert read_error(write(tmp_path / "c.yaml", text)) == f"c.yaml: invalid YAML at {message}"


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    text = "base: &b {type: bash, command: x}\ntask: {<<: *b, id: a}\n"
    doc = cfg.read_document(write(tmp_path / "t.yaml", text))
    assert doc["task"] == {"type": "bash", "command": "x", "id": "a"}


def test_yaml_and_json_read_into_the_same_document(tmp_path: Path) -> None:
    doc = {"tasks": [bash("a"), bash("b", "a", env={"X": "1"}, timeout="30m")]}
    as_yaml = (
        "tasks:\n"
        "  - {id: a, type: bash, command: echo a}\n"
        "  - id: b\n    type: bash\n    command: echo b\n    depends: [a]\n"
        "    env: {X: '1'}\n    timeout: 30m\n"
    )
    assert cfg.read_document(write(tmp_path / "t.yml", as_yaml)) == doc
    assert cfg.read_document(write(tmp_path / "t.json", doc)) == doc


# --------------------------------------------------------------------------- config.json


def test_missing_default_config_gives_the_documented_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert config == cfg.Config(
        path=None,
        max_process_concurrency=3,
        check_new_config_interval=1.0,
        log_directory=tmp_path / "logs",
        env=(),
        state=None,
        retries=0,
        retry_delay=10.0,
        timeout=None,
    )


def test_empty_config_object_gives_the_same_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "conf" / "config.json", {})
    config = load_config(path)
    assert (config.max_process_concurrency, config.check_new_config_interval) == (3, 1.0)
    assert (config.retries, config.retry_delay, config.timeout) == (0, 10.0, None)
    assert config.log_directory == tmp_path / "conf" / "logs"
    assert config.path == path.resolve()


def test_config_values_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.json",
        {
            "max_process_concurrency": 8,
            "check_new_config_interval": 0.5,
            "log_directory": "/var/log/mflow",
            "env": [{"key": "A", "value": "1"}, {"key": "B", "value": 2}],
            "state": "postgresql+psycopg://db/mflow",
            "retries": 2,
            "retry_delay": "1m",
            "timeout": "2h",
        },
    )
    config = load_config(path)
    assert config.max_process_concurrency == 8
    assert config.check_new_config_interval == 0.5
    assert config.log_directory == Path("/var/log/mflow")
    assert config.env == (("A", "1"), ("B", "2"))
    assert config.state == "postgresql+psycopg://db/mflow"
    assert (config.retries, config.retry_delay, config.timeout) == (2, 60.0, 7200.0)


@pytest.mark.parametrize("written", ["./logs/", "./logs", "logs", "logs/"])
def test_log_directory_resolves_against_the_config_files_directory_with_or_without_slash(
    tmp_path: Path, written: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "etc" / "config.json", {"log_directory": written})
    monkeypatch.chdir(tmp_path)
    assert load_config(path).log_directory.resolve() == tmp_path / "etc" / "logs"


def test_relative_sqlite_state_url_resolves_against_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "etc" / "config.json", {"state": "sqlite:///state/mflow.db"})
    monkeypatch.chdir(tmp_path)
    config = load_config("etc/config.json")
    assert config.state == f"sqlite:///{tmp_path}/etc/state/mflow.db"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///x.db", "sqlite:////base/x.db"),
        ("sqlite+pysqlite:///./d/x.db", "sqlite+pysqlite:////base/d/x.db"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("sqlite://", "sqlite://"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_resolve_url_makes_only_relative_sqlite_paths_absolute(url: str, expected: str) -> None:
    assert cfg.resolve_url(url, Path("/base")) == expected


@pytest.mark.parametrize(
    ("value", "pairs"),
    [
        (None, ()),
        ({}, ()),
        ({"A": "1", "B": 2, "C": True}, (("A", "1"), ("B", "2"), ("C", "true"))),
        ([{"key": "A", "value": "x"}, {"key": "B", "value": False}], (("A", "x"), ("B", "false"))),
    ],
)  # fmt: skip
def test_env_accepts_an_object_or_the_seed_list(value: Any, pairs: tuple[Any, ...]) -> None:
    assert cfg.env_pairs(value) == pairs


def test_expand_vars_replaces_set_and_unset_variables() -> None:
    assert cfg.expand_vars("${A}-${B}-$C", {"A": "1"}) == "1--$C"


# --------------------------------------------------------------------------- tasks.json


def spec_of(tmp_path: Path, doc: Any, config: Any = None, name: str = "tasks.json") -> Any:
    tasks = write(tmp_path / name, doc)
    conf = write(tmp_path / "config.json", config) if config is not None else None
    return load_project(config=conf, taskfile=tasks)


def test_task_fields_default_to_config_defaults(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, {"tasks": [bash("a")]}).dag.tasks["a"]
    assert (spec.retries, spec.retry_delay, spec.timeout, spec.env) == (0, 10.0, None, ())
    assert spec.cwd == tmp_path
    assert spec.depends == ()
    assert spec.description is None


def test_dag_defaults_override_config_and_task_fields_override_dag_defaults(
    tmp_path: Path,
) -> None:
    doc = {
        "defaults": {"retries": 2, "retry_delay": "1m", "timeout": "1h"},
        "tasks": [bash("plain"), bash("own", retries=5, retry_delay=3, timeout=30)],
    }
    config = {"retries": 1, "retry_delay": 7, "timeout": 9}
    tasks = spec_of(tmp_path, doc, config).dag.tasks
    assert (tasks["plain"].retries, tasks["plain"].retry_delay, tasks["plain"].timeout) == (
        2,
        60.0,
        3600.0,
    )
    assert (tasks["own"].retries, tasks["own"].retry_delay, tasks["own"].timeout) == (5, 3.0, 30.0)


def test_config_defaults_apply_when_the_dag_has_none(tmp_path: Path) -> None:
    config = {"retries": 1, "retry_delay": "2m", "timeout": "30m"}
    spec = spec_of(tmp_path, {"tasks": [bash("a")]}, config).dag.tasks["a"]
    assert (spec.retries, spec.retry_delay, spec.timeout) == (1, 120.0, 1800.0)


def test_dag_default_env_comes_first_and_the_task_env_after_it(tmp_path: Path) -> None:
    doc = {
        "defaults": {"env": {"A": "dag", "B": "dag"}},
        "tasks": [bash("a", env=[{"key": "B", "value": "task"}]), bash("b")],
    }
    tasks = spec_of(tmp_path, doc).dag.tasks
    assert tasks["a"].env == (("A", "dag"), ("B", "dag"), ("B", "task"))
    assert tasks["b"].env == (("A", "dag"), ("B", "dag"))


def test_cwd_resolves_against_the_tasks_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = {"defaults": {"cwd": "work"}, "tasks": [bash("a", cwd="../out"), bash("b")]}
    write(tmp_path / "dags" / "tasks.json", doc)
    monkeypatch.chdir(tmp_path)
    tasks = load_project(taskfile="dags/tasks.json").dag.tasks
    assert tasks["a"].cwd.resolve() == tmp_path / "out"
    assert tasks["b"].cwd == tmp_path / "dags" / "work"
    assert tasks["a"].path("scripts/x.sh") == tmp_path / "dags" / "scripts" / "x.sh"


def test_dag_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    assert spec_of(tmp_path, {"tasks": []}, name="nightly.json").dag.name == "nightly"
    assert spec_of(tmp_path, {"name": "etl", "tasks": []}).dag.name == "etl"


def test_seed_spellings_are_accepted_as_written(tmp_path: Path) -> None:
    spark = {
        "id": "sp1",
        "type": "spark",
        "master": "spark://hdp:7077",
        "deploy-mode": "client",
        "driver-memory": "1g",
        "executor-memory": "4g",
        "executor-cores": "5",
        "total-executor-cores": "10",
        "class": "a.b.C",
        "ingestor-file": "/opt/x.jar",
        "confs": [{"key": "spark.driver.maxResultSize", "value": "4g"}],
        "parameters": [{"parameter": "--date"}, {"parameter": "2026-11-22"}],
        "env": [{"key": "TZ", "value": "UTC"}],
    }
    spec = spec_of(tmp_path, {"tasks": [spark]}).dag.tasks["sp1"]
    assert spec.fields["deploy-mode"] == "client"
    assert spec.fields["driver-memory"] == "1g"
    assert spec.fields["confs"] == [{"key": "spark.driver.maxResultSize", "value": "4g"}]
    assert spec.fields["parameters"][1] == {"parameter": "2026-11-22"}
    assert spec.env == (("TZ", "UTC"),)


def test_yaml_and_json_dags_build_the_same_task_specs(tmp_path: Path) -> None:
    doc = {
        "name": "same",
        "defaults": {"retries": 1, "env": {"A": "1"}},
        "tasks": [
            bash("a", env=[{"key": "B", "value": "2"}]),
            bash("b", "a", timeout="30m", cwd="sub"),
            {"id": "c", "type": "command", "command": "ls", "args": ["-l", 1], "depends": ["a"]},
        ],
    }
    yaml_text = """
name: same
defaults: {retries: 1, env: {A: "1"}}
tasks:
  - {id: a, type: bash, command: echo a, env: [{key: B, value: "2"}]}
  - {id: b, type: bash, command: echo b, depends: [a], timeout: 30m, cwd: sub}
  - id: c
    type: command
    command: ls
    args: [-l, 1]
    depends: [a]
"""
    from_json = load_project(taskfile=write(tmp_path / "t.json", doc)).dag
    from_yaml = load_project(taskfile=write(tmp_path / "t.yaml", yaml_text)).dag

    def comparable(dag: cfg.Dag) -> list[cfg.TaskSpec]:
        return [replace(t, source=cfg.Source("", t.source.json_path)) for t in dag.tasks.values()]

    assert from_json.name == from_yaml.name == "same"
    assert comparable(from_json) == comparable(from_yaml)
    assert from_json.edges == from_yaml.edges == 2


def test_a_dependency_listed_twice_is_one_edge(tmp_path: Path) -> None:
    dag = spec_of(tmp_path, {"tasks": [bash("a"), bash("b", "a", "a")]}).dag
    assert dag.edges == 1


# --------------------------------------------------------------------------- datasources


def test_datasource_repr_hides_secrets() -> None:
    source = cfg.Datasource(
        "db", "oracle", {"name": "db", "user": "u", "password": "hunter2", "token": "tk"}
    )
    assert "hunter2" not in repr(source) and "tk'" not in str(source)
    assert "'user': 'u'" in repr(source)


def test_datasource_kinds_and_relative_sqlite_urls(tmp_path: Path) -> None:
    doc = {
        "connections": [
            {"name": "ora", "connection_string": "h:1521/s", "user": "u", "password": "p"},
            {"name": "lite", "url": "sqlite:///data/x.db"},
            {"name": "tg", "kind": "tigergraph", "host": "tg.local", "secret": "s"},
        ]
    }
    path = write(tmp_path / "etc" / "oracle.json", doc)
    sources = load_project(taskfile=write(tmp_path / "t.json", {"tasks": []}), datasources=path)
    conns = sources.datasources.connections
    kinds = {name: conn.kind for name, conn in conns.items()}
    assert kinds == {"ora": "oracle", "lite": "sql", "tg": "tigergraph"}
    assert conns["lite"].get("url") == f"sqlite:///{tmp_path}/etc/data/x.db"
    assert sources.datasources.path == path.resolve()
