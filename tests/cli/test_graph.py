"""`mflow graph --format tree|dot|json`: every task and every edge shown, JSON for tools,
Graphviz DOT, a tree for people; an invalid DAG is refused like `mflow validate` does."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from mflow_cli import EXAMPLES, InProcessRunner, MflowRunner

TASKS: list[dict[str, Any]] = [
    {"id": "extract", "type": "bash", "command": "true"},
    {"id": "clean.even", "type": "bash", "command": "true", "depends": ["extract"]},
    {"id": "clean-odd", "type": "command", "command": "true", "depends": ["extract"]},
    {"id": "load", "type": "bash", "command": "true", "depends": ["clean.even", "clean-odd"]},
    {"id": "report_a", "type": "bash", "command": "true", "depends": ["load"]},
    {"id": "report_b", "type": "bash", "command": "true", "depends": ["load", "load"]},
    {"id": "lonely", "type": "bash", "command": "true"},
]
EDGES = {
    ("extract", "clean.even"),
    ("extract", "clean-odd"),
    ("clean.even", "load"),
    ("clean-odd", "load"),
    ("load", "report_a"),
    ("load", "report_b"),
}


@pytest.fixture
def dag(tmp_path: Path) -> Path:
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps({"name": "nightly", "tasks": TASKS}))
    return path


def test_json_has_every_node_and_every_edge_once(
    dag: Path, mflow_in_process: InProcessRunner
) -> None:
    code, out, err = mflow_in_process("graph", "--format", "json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert doc["name"] == "nightly"
    assert doc["taskfile"] == str(dag)
    assert [n["id"] for n in doc["nodes"]] == [t["id"] for t in TASKS]
    assert {n["id"]: n["type"] for n in doc["nodes"]}["clean-odd"] == "command"
    assert {(e["from"], e["to"]) for e in doc["edges"]} == EDGES
    assert len(doc["edges"]) == len(EDGES)
    assert {n["id"]: n["depends"] for n in doc["nodes"]}["report_b"] == ["load"]


def test_dot_declares_every_node_and_every_edge(
    dag: Path, mflow_in_process: InProcessRunner
) -> None:
    code, out, err = mflow_in_process("graph", "--format", "dot")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == 'digraph "nightly" {'
    assert lines[-1] == "}"
    nodes = re.findall(r'^  "([^"]+)" \[label=', out, re.MULTILINE)
    assert nodes == [t["id"] for t in TASKS]
    edges = re.findall(r'^  "([^"]+)" -> "([^"]+)";$', out, re.MULTILINE)
    assert sorted(edges) == sorted(EDGES)
    assert out.count("{") == out.count("}") == 1


def test_dot_output_is_read_by_graphviz_when_installed(dag: Path, mflow: MflowRunner) -> None:
    import shutil
    import subprocess

    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed")
    out = mflow("graph", "--format", "dot").stdout
    subprocess.run(["dot", "-Tsvg"], input=out, text=True, check=True, capture_output=True)


def test_tree_mentions_every_task_and_marks_repeats(
    dag: Path, mflow_in_process: InProcessRunner
) -> None:
    code, out, err = mflow_in_process("graph")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "nightly (7 tasks, 6 edges)"
    for task in TASKS:
        assert task["id"] in out
    assert "load (above)" in out  # reached again through the second branch
    assert "also after clean-odd" in out
    assert out.count("report_b") == 1  # listed twice in depends, shown once


def test_tree_in_a_real_process_has_no_colour_codes(dag: Path, mflow: MflowRunner) -> None:
    result = mflow("graph", "--format", "tree")
    assert result.code == 0, result.stderr
    assert "\x1b[" not in result.stdout
    assert "└── " in result.stdout and "lonely" in result.stdout


def test_tree_of_a_very_long_chain_does_not_hit_the_recursion_limit(
    tmp_path: Path, mflow_in_process: InProcessRunner
) -> None:
    chain = [{"id": "t0", "type": "bash", "command": "true"}] + [
        {"id": f"t{i}", "type": "bash", "command": "true", "depends": [f"t{i - 1}"]}
        for i in range(1, 1500)
    ]
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": chain}))
    code, out, _ = mflow_in_process("graph")
    assert code == 0
    assert out.startswith("tasks (1500 tasks, 1499 edges)")


def test_headings_of_a_one_task_dag_say_1_task(
    tmp_path: Path, mflow_in_process: InProcessRunner
) -> None:
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": [TASKS[0]]}))
    assert mflow_in_process("graph")[1].startswith("tasks (1 task, 0 edges)")
    assert mflow_in_process("validate")[1] == "OK: 1 task, 0 edges\n"
    assert mflow_in_process("--dry-run")[1].startswith("dry run of tasks (tasks.json): 1 task, ")


@pytest.mark.parametrize("fmt", ["tree", "dot", "json"])
def test_graph_of_an_invalid_dag_exits_2_with_the_problems(
    tmp_path: Path, mflow_in_process: InProcessRunner, fmt: str
) -> None:
    (tmp_path / "tasks.json").write_text(
        json.dumps({"tasks": [{"id": "a", "type": "bash", "command": "x", "depends": ["b"]}]})
    )
    assert mflow_in_process("graph", "--format", fmt) == (
        2,
        "",
        "tasks.json $.tasks[0].depends[0]: unknown task 'b' in task 'a' (known: a)\n",
    )


def test_unknown_format_is_a_usage_error(dag: Path, mflow_in_process: InProcessRunner) -> None:
    code, _, err = mflow_in_process("graph", "--format", "png")
    assert code == 2
    assert "--format" in err


def test_graph_of_the_nested_example_parent(mflow_in_process: InProcessRunner) -> None:
    code, out, _ = mflow_in_process(
        "graph", "--format", "json", "--taskfile", "parent.json", cwd=EXAMPLES / "nested"
    )
    assert code == 0
    edges = {(e["from"], e["to"]) for e in json.loads(out)["edges"]}
    assert edges == {
        ("prepare", "child_a"),
        ("prepare", "child_b"),
        ("child_a", "after_children"),
        ("child_b", "after_children"),
    }
