"""`mflow validate`: `OK: N tasks, M edges` (`1 task`, `1 edge` for one) and exit 0, or one
line per problem naming the file and exit 2, for every input whatever its shape, never a
traceback; the examples give their documented results."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mflow_cli import EXAMPLES, REPO, MflowRunner, Result, invoke_in_process
from strategies import SECRET, datasources_documents, json_values, task_documents

OK_LINE = re.compile(r"^OK: (?:1 task|\d+ tasks), (?:1 edge|\d+ edges)$")
TARE5 = (
    "tasks.json $.tasks[5].depends[0]: unknown task 'tarea5' in task 'tarea6' (known: tarea1, "
    "tarea2, tarea3, tarea4, sp1_tickets, tarea6, tarea7, sp1, siper_desvio141)"
)


def write(path: Path, doc: Any) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def assert_clean_failure(result: Result, file: str) -> None:
    """Exit 2, nothing on stdout, one line per problem, each starting with the file's name."""
    assert result.code == 2, result
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert result.err_lines, "at least one problem"
    for line in result.err_lines:
        assert line.startswith((f"{file} ", f"{file}:")), line


# --------------------------------------------------------------------------- real processes


def test_seed_example_reports_the_missing_tarea5_and_exits_2(mflow: MflowRunner) -> None:
    result = mflow("validate", cwd=EXAMPLES / "seed")
    assert result == Result(2, "", TARE5 + "\n")


def test_valid_dag_prints_ok_with_task_and_edge_counts_and_exits_0(
    mflow: MflowRunner, tmp_path: Path
) -> None:
    tasks = [
        {"id": "a", "type": "bash", "command": "true"},
        {"id": "b", "type": "bash", "command": "true", "depends": ["a"]},
        {"id": "c", "type": "bash", "command": "true", "depends": ["a", "b"]},
    ]
    write(tmp_path / "tasks.json", {"tasks": tasks})
    assert mflow("validate") == Result(0, "OK: 3 tasks, 3 edges\n", "")


def test_ok_line_says_task_and_edge_in_the_singular_for_one(tmp_path: Path) -> None:
    one = {"id": "a", "type": "bash", "command": "true"}
    write(tmp_path / "one.json", {"tasks": [one]})
    write(tmp_path / "two.json", {"tasks": [one, {**one, "id": "b", "depends": ["a"]}]})
    assert invoke_in_process("validate", "-f", "one.json", cwd=tmp_path).stdout == (
        "OK: 1 task, 0 edges\n"
    )
    assert invoke_in_process("validate", "-f", "two.json", cwd=tmp_path).stdout == (
        "OK: 2 tasks, 1 edge\n"
    )


def test_broken_files_in_a_real_process_exit_2_without_traceback(
    mflow: MflowRunner, tmp_path: Path
) -> None:
    write(tmp_path / "config.json", {"max_process_concurrency": 0})
    write(tmp_path / "tasks.json", '{"tasks": [')
    result = mflow("validate")
    assert result.code == 2
    assert result.err_lines == [
        "config.json $.max_process_concurrency: must be >= 1, got 0",
        "tasks.json: invalid JSON at line 1, column 12: Expecting value",
    ]


def test_root_demo_dag_validates(mflow: MflowRunner) -> None:
    result = mflow("validate", cwd=REPO)
    assert result.code == 0, result.stderr
    assert OK_LINE.match(result.stdout.strip())


def test_usage_error_exits_2(mflow: MflowRunner) -> None:
    result = mflow("validate", "--no-such-option")
    assert result.code == 2
    assert "No such option: --no-such-option" in result.stderr


# --------------------------------------------------------------------------- examples


def example_taskfiles() -> list[Path]:
    """Every DAG under examples/ (config, datasources and job files are not DAGs)."""
    jobs = {EXAMPLES / "scheduler", EXAMPLES / "partitions"}
    return sorted(
        p
        for p in EXAMPLES.rglob("*")
        if p.suffix in (".json", ".yaml", ".yml")
        and p.name not in ("config.json", "oracle.json")
        and p.parent not in jobs
    )


def test_examples_hold_the_documented_dags() -> None:
    names = {str(p.relative_to(EXAMPLES)) for p in example_taskfiles()}
    assert {
        "seed/tasks.json",
        "nested/parent.json",
        "nested/child_a.json",
        "nested/child_b.json",
        "yaml/tasks.yaml",
        "yaml/tasks.json",
        "spark/tasks.json",
    } <= names


@pytest.mark.parametrize(
    "taskfile", example_taskfiles(), ids=lambda p: str(p.relative_to(EXAMPLES))
)
def test_every_example_gives_its_expected_result(taskfile: Path) -> None:
    result = invoke_in_process("validate", "--taskfile", taskfile.name, cwd=taskfile.parent)
    if taskfile.parent.name == "seed":
        assert result == Result(2, "", TARE5 + "\n")
    else:
        assert result.code == 0, result.stderr
        assert OK_LINE.match(result.stdout.strip()), result.stdout


def test_yaml_example_matches_its_json_twin() -> None:
    results = {
        name: invoke_in_process("validate", "--taskfile", name, cwd=EXAMPLES / "yaml")
        for name in ("tasks.yaml", "tasks.json")
    }
    assert results["tasks.yaml"] == results["tasks.json"] == Result(0, "OK: 4 tasks, 4 edges\n", "")


def test_nested_example_validates_from_another_directory() -> None:
    # `taskfile` of an mflow task is relative to the parent file, not to the working directory.
    result = invoke_in_process("validate", "--taskfile", "examples/nested/parent.json", cwd=REPO)
    assert result == Result(0, "OK: 4 tasks, 4 edges\n", "")


# --------------------------------------------------------------------------- bad inputs


BAD_TASKFILES: list[tuple[str, str | bytes, list[str]]] = [
    ("list.json", "[]", ["list.json $: expected object, got an array"]),
    ("dict.json", '{"tasks": {}}', ["dict.json $.tasks: expected array, got an object"]),
    (
        "num.json",
        '{"tasks": [{"id": 5, "type": "bash", "command": "x"}]}',
        [
            "num.json $.tasks[0].id: expected string, got an integer (ids are 1 to 200 letters, "
            "digits, '_', '.' and '-')"
        ],
    ),
    (
        "typelist.json",
        '{"tasks": [{"id": "a", "type": ["bash"], "command": "x"}]}',
        ["typelist.json $.tasks[0].type: expected string, got an array in task 'a'"],
    ),
    (
        "dep.json",
        '{"tasks": [{"id": "a", "type": "bash", "command": "x", "depends": "b"}]}',
        ["dep.json $.tasks[0].depends: expected array, got a string in task 'a'"],
    ),
    (
        "tabs.yaml",
        "tasks:\n\t- id: a\n",
        [
            "tabs.yaml: invalid YAML at line 2, column 1: found character that cannot start any "
            "token (a tab: YAML indents with spaces only)"
        ],
    ),
    ("empty.json", "", ["empty.json: file is empty"]),
    ("empty.yaml", "\n", ["empty.yaml: file is empty"]),
    ("null.yaml", "~\n", ["null.yaml $: expected object, got null"]),
    ("bin.json", b"\x89PNG\r\n\x1a\n\x00",
     ["bin.json: not a UTF-8 text file: byte 0x89 at line 1, column 1"]),
    (
        "typo.json",
        '{"tasks": [{"id": "a", "type": "bash", "command": "x", "depend": ["b"]}]}',
        [
            "typo.json $.tasks[0]: unknown field 'depend' for type 'bash' in task 'a' (did you "
            "mean 'depends'? allowed: id, type, depends, retries, retry_delay, timeout, env, "
            "cwd, description, queue, command)"
        ],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "expected"), BAD_TASKFILES, ids=[b[0] for b in BAD_TASKFILES]
)
def test_bad_taskfile_gives_one_line_per_problem(
    tmp_path: Path, name: str, content: str | bytes, expected: list[str]
) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = invoke_in_process("validate", "--taskfile", name, cwd=tmp_path)
    assert_clean_failure(result, name)
    assert result.err_lines == expected


def test_directory_as_taskfile(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    result = invoke_in_process("validate", "--taskfile", "dags", cwd=tmp_path)
    assert result == Result(2, "", "dags: is a directory, not a file\n")


def test_zero_concurrency_in_config(tmp_path: Path) -> None:
    write(tmp_path / "tasks.json", {"tasks": []})
    write(tmp_path / "config.json", {"max_process_concurrency": 0})
    result = invoke_in_process("validate", cwd=tmp_path)
    assert result == Result(2, "", "config.json $.max_process_concurrency: must be >= 1, got 0\n")


def test_missing_named_config_is_an_error_but_a_missing_default_is_not(tmp_path: Path) -> None:
    write(tmp_path / "tasks.json", {"tasks": []})
    assert invoke_in_process("validate", cwd=tmp_path).code == 0
    result = invoke_in_process("validate", "--config", "config.json", cwd=tmp_path)
    assert result == Result(
        2,
        "",
        f"config.json: file not found (named by --config; looked for {tmp_path}/config.json)\n",
    )


def test_file_options_before_the_subcommand_apply_to_it(tmp_path: Path) -> None:
    write(tmp_path / "dag.json", {"tasks": [{"id": "a", "type": "bash", "command": "x"}]})
    assert invoke_in_process("--taskfile", "dag.json", "validate", cwd=tmp_path) == Result(
        0, "OK: 1 task, 0 edges\n", ""
    )


def test_every_problem_of_every_kind_in_one_run(tmp_path: Path) -> None:
    tasks = [
        {"id": "a", "type": "bash", "command": "x", "depends": ["b", "ghost"]},
        {"id": "b", "type": "bash", "command": "x", "depends": ["a"]},
        {"id": "c", "type": "bash", "command": "x", "depends": ["d"]},
        {"id": "d", "type": "bash", "command": "x", "depends": ["c", "d"]},
        {"id": "a", "type": "shell", "command": "x"},
        {"id": "s", "type": "spark"},
    ]
    write(tmp_path / "tasks.json", {"tasks": tasks})
    result = invoke_in_process("validate", cwd=tmp_path)
    assert_clean_failure(result, "tasks.json")
    assert [line.split(": ", 1)[1] for line in result.err_lines] == [
        "unknown task 'ghost' in task 'a' (known: a, b, c, d, s)",
        "dependency cycle a -> b -> a (each task depends on the next)",
        "dependency cycle c -> d -> c (each task depends on the next)",
        "task depends on itself in task 'd'",
        "duplicate task id 'a' (first defined at $.tasks[0])",
        "missing required field 'ingestor-file' in task 's'",
    ]


# --------------------------------------------------------------------------- any input at all


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """One directory for the property tests (hypothesis runs many examples per test)."""
    path = Path(tempfile.mkdtemp(prefix="mflow-validate-"))
    (path / "child.json").write_text('{"tasks": []}')
    yield path
    shutil.rmtree(path)


FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def validate_text(directory: Path, name: str, content: str | bytes) -> Result:
    path = directory / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    result = invoke_in_process("validate", "--taskfile", name, cwd=directory)
    assert result.code in (0, 2), result
    assert "Traceback" not in result.stderr
    if result.code == 0:
        assert OK_LINE.match(result.stdout.strip()), result
        assert result.stderr == ""
    else:
        assert_clean_failure(result, name)
    return result


@FUZZ
@given(json_values)
def test_any_json_document_exits_0_or_2_with_one_line_per_problem(
    scratch: Path, document: Any
) -> None:
    validate_text(scratch, "any.json", json.dumps(document))


@FUZZ
@given(task_documents())
def test_nearly_valid_task_files_exit_0_or_2_with_one_line_per_problem(
    scratch: Path, document: Any
) -> None:
    validate_text(scratch, "dag.json", json.dumps(document))


@FUZZ
@given(task_documents(), st.sampled_from(["dag.yaml", "dag.yml"]))
def test_nearly_valid_yaml_task_files_exit_0_or_2(scratch: Path, document: Any, name: str) -> None:
    import yaml

    validate_text(scratch, name, yaml.safe_dump(document, allow_unicode=True))


@FUZZ
@given(
    st.text(max_size=80) | st.binary(max_size=40),
    st.sampled_from(["raw.json", "raw.yaml"]),
)
def test_any_text_or_bytes_exit_0_or_2(scratch: Path, content: str | bytes, name: str) -> None:
    validate_text(scratch, name, content)


@FUZZ
@given(datasources_documents())
def test_datasources_problems_never_print_a_secret(scratch: Path, document: Any) -> None:
    (scratch / "dag.json").write_text('{"tasks": []}')
    (scratch / "oracle.json").write_text(json.dumps(document))
    try:
        result = invoke_in_process("validate", "--taskfile", "dag.json", cwd=scratch)
    finally:
        (scratch / "oracle.json").unlink()
    assert result.code in (0, 2)
    assert SECRET not in result.stdout + result.stderr
    for line in result.err_lines:
        assert line.startswith(("oracle.json ", "oracle.json:")), line


# Ids people do not mean to write: control characters, newlines at the end, very long ones.
hostile_ids = st.one_of(
    st.text(st.characters(max_codepoint=0x9F), min_size=1, max_size=8),
    st.text(st.sampled_from("ab\n\r\t\x00\x85\u2028"), min_size=1, max_size=6),
    st.integers(190, 400).map(lambda n: "x" * n),
    st.sampled_from(["ok\n", "ok\r\n", "a\x00b", "\u2028"]),
)
# How the taskfile itself may be laid out on disk.
FILE_SHAPES = ["file", "symlink", "loop", "dangling", "directory", "under_a_file"]


@FUZZ
@given(st.lists(hostile_ids, min_size=1, max_size=3), st.sampled_from(FILE_SHAPES))
def test_hostile_ids_and_files_exit_0_or_2_with_one_line_per_problem(
    scratch: Path, ids: list[str], shape: str
) -> None:
    tasks = [{"id": i, "type": "bash", "command": "true"} for i in ids]
    where = Path(tempfile.mkdtemp(dir=scratch))
    real = where / "real.json"
    real.write_text(json.dumps({"tasks": tasks}))
    name = "dag.json"
    if shape == "file":
        name = "real.json"
    elif shape == "symlink":
        (where / name).symlink_to(real)
    elif shape == "loop":
        (where / name).symlink_to(where / "other.json")
        (where / "other.json").symlink_to(where / name)
    elif shape == "dangling":
        (where / name).symlink_to(where / "gone.json")
    elif shape == "directory":
        (where / name).mkdir()
    else:
        name = "real.json/dag.json"
    result = invoke_in_process("validate", "--taskfile", name, cwd=where)
    assert result.code in (0, 2), result
    assert "Traceback" not in result.stderr
    if result.code == 0:
        assert OK_LINE.match(result.stdout.strip()), result
        assert all(i.isprintable() and len(i) <= 200 for i in ids)
    else:
        assert result.err_lines, result
        for line in result.err_lines:
            assert line.isprintable() and len(line) < 1000, line
