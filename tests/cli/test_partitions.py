"""`mflow datasets` and `mflow data` (SPEC §6): datasets, partition statuses, resets."""

from __future__ import annotations

import json
from pathlib import Path

from mflow_cli import MflowRunner


def test_datasets_add_and_list(mflow: MflowRunner) -> None:
    assert mflow("datasets", "add", "sales", '{"path": "/d/sales/${dataid}"}').stdout == (
        "dataset sales created\n"
    )
    assert mflow("datasets", "add", "sales", '{"path": "/e/${dataid}"}').stdout == (
        "dataset sales replaced\n"
    )
    listed = json.loads(mflow("datasets", "list", "--json").stdout)
    assert listed == [{"name": "sales", "fields": {"path": "/e/${dataid}"}}]


def test_a_dataset_from_a_file(tmp_path: Path, mflow: MflowRunner) -> None:
    (tmp_path / "costs.yaml").write_text("fields:\n  table: costs_${dataid}\n")
    assert mflow("datasets", "add", "costs", "-f", "costs.yaml").code == 0
    assert "costs  table=costs_${dataid}" in mflow("datasets", "list").stdout


def test_bad_datasets_are_one_line_exit_2(mflow: MflowRunner) -> None:
    for args, says in (
        (["bad name", "{}"], "dataset name 'bad name' may hold"),
        (["x", "[1]"], "argument JSON $: a dataset is an object of fields"),
        (["x", '{"a b": "1"}'], "argument JSON $.a b: field name 'a b' is not a variable name"),
        (["x", "{nope"], "argument JSON: invalid JSON"),
        (["x"], "give the dataset as JSON or with -f FILE"),
    ):
        result = mflow("datasets", "add", *args)
        assert result.code == 2 and len(result.err_lines) == 1, result
        assert says in result.stderr, result


def test_data_set_list_and_reset(mflow: MflowRunner) -> None:
    mflow("datasets", "add", "sales", '{"path": "/d/${dataid}"}')
    assert mflow("data", "set", "sales", "2026-11-02", "ready").stdout == "sales 2026-11-02 READY\n"
    mflow("data", "set", "sales", "2026-11-01", "FAILED")
    assert mflow("data", "reset", "sales", "2026-11-01").code == 0
    rows = json.loads(mflow("data", "list", "sales", "--json").stdout)
    assert [(r["dataid"], r["status"]) for r in rows] == [
        ("2026-11-01", "RESUBMIT"),
        ("2026-11-02", "READY"),
    ]
    assert set(rows[0]) == {"dataset", "dataid", "status", "job", "run_id", "host", "updated"}
    ready = json.loads(mflow("data", "list", "--status", "READY", "--json").stdout)
    assert [r["dataid"] for r in ready] == ["2026-11-02"]
    table = mflow("data", "list").out_lines
    assert table[0].split() == ["DATASET", "DATAID", "STATUS", "JOB", "RUN", "HOST", "UPDATED"]


def test_data_errors_name_what_is_known(mflow: MflowRunner) -> None:
    mflow("datasets", "add", "sales", '{"path": "/d/${dataid}"}')
    unknown = mflow("data", "set", "nope", "1", "READY")
    assert unknown.code == 2 and unknown.err_lines == ["unknown dataset 'nope' (known: sales)"]
    status = mflow("data", "set", "sales", "1", "DONE")
    assert status.code == 2 and "one of: RUNNING, READY, FAILED, RESUBMIT" in status.stderr
    dataid = mflow("data", "set", "sales", "a/b", "READY")
    assert dataid.code == 2 and "dataid 'a/b' may hold" in dataid.stderr
