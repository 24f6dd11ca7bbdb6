"""`spark` tasks from the `mflow` command: the spark-submit argv in the seed's order (SPEC §2),
no shell and no empty trailing argument, the task's `env` in the process environment, which
spark-submit runs (`spark_submit` field, then `$SPARK_HOME/bin/spark-submit`, then PATH), and
the exact command line in the task log. A recording fake spark-submit stands in for Spark; a
real PySpark job runs only when `pyspark` is installed."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from mflow_cli import EXAMPLES, MflowRunner

# Writes its arguments one per line, and a few environment variables, next to itself, under
# the id of the task that started it; several fakes in several directories tell apart which
# one a task ran.
RECORDER = """#!/usr/bin/env bash
here="$(dirname "$0")"
printf '%s\\n' "$@" > "$here/$MFLOW_TASK_ID.argv"
{
  echo "argc=$#"
  for name in PYSPARK_PYTHON TZ SPARK_HOME FROM_CONFIG MFLOW_TASK_ID MFLOW_PASSKEY; do
    printf '%s=%s\\n' "$name" "${!name-<unset>}"
  done
} > "$here/$MFLOW_TASK_ID.env"
echo "fake spark-submit: $# arguments"
"""


def fake_spark_submit(directory: Path) -> Path:
    """A recording spark-submit in `directory` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "spark-submit"
    path.write_text(RECORDER)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def recorded_argv(directory: Path, task_id: str) -> list[str]:
    """The arguments the fake in `directory` received (argv[0] excluded), exactly."""
    text = (directory / f"{task_id}.argv").read_text()
    # One line per argument: an empty argument is an empty line, so nothing is lost.
    return text.split("\n")[:-1] if text else []


def recorded_env(directory: Path, task_id: str) -> dict[str, str]:
    lines = (directory / f"{task_id}.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def write_dag(
    tmp_path: Path, tasks: list[dict[str, Any]], config: dict[str, Any] | None = None
) -> None:
    (tmp_path / "tasks.json").write_text(json.dumps({"name": "sparky", "tasks": tasks}))
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))


def spark(task_id: str = "job", **fields: Any) -> dict[str, Any]:
    return {"id": task_id, "type": "spark", "ingestor-file": "app.py", **fields}


def path_without_spark(extra: Path | None = None) -> str:
    """PATH with `extra` first and no directory holding a real spark-submit."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    dirs = [d for d in dirs if not (Path(d) / "spark-submit").exists()]
    return os.pathsep.join([str(extra)] * (extra is not None) + dirs)


# Every seed field set, written in an order unlike the argv's: the argv order is mflow's.
ALL_FIELDS: dict[str, Any] = {
    "parameters": [{"parameter": "--date"}, {"parameter": "2026-11-22"}, {"parameter": 7}],
    "confs": [
        {"key": "spark.sql.shuffle.partitions", "value": 64},
        {"key": "spark.driver.maxResultSize", "value": "4g"},
    ],
    "total-executor-cores": "10",
    "executor-cores": 5,
    "executor-memory": "4g",
    "num-executors": 4,
    "driver-cores": 2,
    "driver-memory": "1g",
    "class": "org.example.Ingest",
    "supervise": "yes",
    "verbose": "yes",
    "name": "ingest tickets",
    "deploy-mode": "client",
    "master": "spark://spark-master:7077",
    "ingestor-file": "/opt/ingestion/ingest.jar",
}
ALL_ARGS = [
    "--master", "spark://spark-master:7077",
    "--deploy-mode", "client",
    "--name", "ingest tickets",
    "--verbose",
    "--supervise",
    "--class", "org.example.Ingest",
    "--driver-memory", "1g",
    "--driver-cores", "2",
    "--num-executors", "4",
    "--executor-memory", "4g",
    "--executor-cores", "5",
    "--total-executor-cores", "10",
    "--conf", "spark.sql.shuffle.partitions=64",
    "--conf", "spark.driver.maxResultSize=4g",
    "/opt/ingestion/ingest.jar",
    "--date", "2026-11-22", "7",
]  # fmt: skip


def test_every_seed_field_becomes_its_option_in_the_seeds_order(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    fake = fake_spark_submit(tmp_path / "spark")
    write_dag(tmp_path, [spark("job", spark_submit=str(fake), **ALL_FIELDS)])
    result = mflow()
    assert result.code == 0, result.stdout + result.stderr
    assert recorded_argv(fake.parent, "job") == ALL_ARGS
    assert recorded_env(fake.parent, "job")["argc"] == str(len(ALL_ARGS))


def test_arguments_reach_spark_submit_verbatim_without_a_shell(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    fake = fake_spark_submit(tmp_path / "spark")
    odd = ["a b", "$(touch shell-ran)", "x;touch shell-ran", "'quoted'", "*"]
    write_dag(
        tmp_path,
        [
            spark(
                "job",
                spark_submit=str(fake),
                name="name with spaces",
                confs=[{"key": "spark.app.note", "value": "v w"}],
                parameters=[{"parameter": p} for p in odd],
            )
        ],
    )
    assert mflow().code == 0
    assert recorded_argv(fake.parent, "job") == [
        "--name", "name with spaces", "--conf", "spark.app.note=v w", "app.py", *odd,
    ]  # fmt: skip
    assert not (tmp_path / "shell-ran").exists()


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, ["app.py"]),
        ({"master": "local[2]"}, ["--master", "local[2]", "app.py"]),
        ({"parameters": [], "confs": []}, ["app.py"]),
        ({"verbose": "no", "supervise": "no"}, ["app.py"]),
        ({"verbose": True, "supervise": False}, ["--verbose", "app.py"]),
        ({"name": "", "class": ""}, ["app.py"]),
    ],
    ids=["only-ingestor-file", "one-option", "empty-lists", "flags-no", "flags-bool", "empty-str"],
)
def test_absent_fields_add_no_option_and_no_empty_trailing_argument(
    tmp_path: Path, mflow: MflowRunner, fields: dict[str, Any], expected: list[str]
) -> None:
    fake = fake_spark_submit(tmp_path / "spark")
    write_dag(tmp_path, [spark("job", spark_submit=str(fake), **fields)])
    result = mflow()
    assert result.code == 0, result.stdout + result.stderr
    assert recorded_argv(fake.parent, "job") == expected
    assert recorded_env(fake.parent, "job")["argc"] == str(len(expected))


def test_task_env_is_in_spark_submits_environment(tmp_path: Path, mflow: MflowRunner) -> None:
    fake = fake_spark_submit(tmp_path / "spark")
    seed_env = [
        {"key": "PYSPARK_PYTHON", "value": "python3"},
        {"key": "TZ", "value": "${FROM_CONFIG}/UTC"},
    ]
    write_dag(
        tmp_path,
        [
            spark("listed", spark_submit=str(fake), env=seed_env),
            spark("mapped", spark_submit=str(fake), env={"PYSPARK_PYTHON": "python3.11"}),
        ],
        config={"env": [{"key": "FROM_CONFIG", "value": "Etc"}]},
    )
    result = mflow(env={"MFLOW_PASSKEY": "Pk-not-for-tasks-5v"})
    assert result.code == 0, result.stdout + result.stderr
    listed = recorded_env(fake.parent, "listed")
    assert listed["PYSPARK_PYTHON"] == "python3"
    assert listed["TZ"] == "Etc/UTC"  # expanded against the config env
    assert listed["FROM_CONFIG"] == "Etc"
    assert listed["MFLOW_TASK_ID"] == "listed"
    assert listed["MFLOW_PASSKEY"] == "<unset>"
    mapped = recorded_env(fake.parent, "mapped")
    assert mapped["PYSPARK_PYTHON"] == "python3.11"
    assert mapped["TZ"] == "<unset>"  # one task's env does not leak into another's


@pytest.mark.parametrize(
    ("field", "spark_home", "task_env", "winner"),
    [
        (True, True, False, "field"),
        (False, True, False, "home"),
        (False, False, True, "task_home"),
        (False, False, False, "path"),
    ],
    ids=[
        "field-over-SPARK_HOME-and-PATH",
        "SPARK_HOME-over-PATH",
        "SPARK_HOME-in-task-env",
        "PATH",
    ],
)
def test_which_spark_submit_runs(
    tmp_path: Path,
    mflow: MflowRunner,
    field: bool,
    spark_home: bool,
    task_env: bool,
    winner: str,
) -> None:
    fakes = {
        "field": fake_spark_submit(tmp_path / "field"),
        "home": fake_spark_submit(tmp_path / "home" / "bin"),
        "task_home": fake_spark_submit(tmp_path / "task_home" / "bin"),
        "path": fake_spark_submit(tmp_path / "path"),
    }
    fields: dict[str, Any] = {}
    if field:
        fields["spark_submit"] = "field/spark-submit"  # relative: to the tasks file's directory
    if task_env:
        fields["env"] = {"SPARK_HOME": str(tmp_path / "task_home")}
    write_dag(tmp_path, [spark("job", **fields)])
    env = {"PATH": path_without_spark(tmp_path / "path")}
    if spark_home:
        env["SPARK_HOME"] = str(tmp_path / "home")
    dry = mflow("--dry-run", env=env)
    result = mflow(env=env)
    assert result.code == 0, result.stdout + result.stderr
    ran = {name for name, fake in fakes.items() if (fake.parent / "job.argv").exists()}
    assert ran == {winner}
    expected_argv0 = "spark-submit" if winner == "path" else str(fakes[winner])
    command_line = shlex.join([expected_argv0, "app.py"])
    header = (tmp_path / "logs" / "master_1_task_job.log").read_text().splitlines()[0]
    assert header.endswith(f": {command_line}")
    assert dry.code == 0 and dry.out_lines[2].strip() == command_line  # what really runs


def test_missing_spark_submit_fails_the_task_saying_so(tmp_path: Path, mflow: MflowRunner) -> None:
    write_dag(tmp_path, [spark("job")])
    result = mflow(env={"PATH": path_without_spark()})
    assert result.code == 1
    assert "Traceback" not in result.stderr
    log = (tmp_path / "logs" / "master_1_task_job.log").read_text()
    assert "spark-submit" in log


def test_exact_command_line_is_in_the_task_log_and_the_dry_run(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    fake = fake_spark_submit(tmp_path / "spark")
    write_dag(tmp_path, [spark("job", spark_submit=str(fake), **ALL_FIELDS)])
    command_line = shlex.join([str(fake), *ALL_ARGS])
    dry = mflow("--dry-run")
    assert dry.code == 0, dry.stderr
    assert command_line in dry.out_lines[2]
    assert not (fake.parent / "job.argv").exists()
    result = mflow()
    assert result.code == 0, result.stdout + result.stderr
    log = (tmp_path / "logs" / "master_1_task_job.log").read_text().splitlines()
    assert log[0].startswith("===== mflow ") and log[0].endswith(f": {command_line}")
    assert "fake spark-submit: 30 arguments" in log
    assert len(ALL_ARGS) == 30


def test_examples_spark_validates(mflow: MflowRunner) -> None:
    result = mflow("validate", "--taskfile", str(EXAMPLES / "spark" / "tasks.json"))
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "OK: 3 tasks, 2 edges"


def test_examples_spark_runs_with_its_stand_in(tmp_path: Path, mflow: MflowRunner) -> None:
    # A copy, so that the run's logs stay out of the repository.
    example = tmp_path / "spark"
    shutil.copytree(EXAMPLES / "spark", example, ignore=shutil.ignore_patterns("logs"))
    result = mflow(cwd=example, env={"SPARK_HOME": str(example)})
    assert result.code == 0, result.stdout + result.stderr
    log = (example / "logs" / "master_1_task_ingest_tickets.log").read_text()
    assert "spark-submit called with 22 arguments:" in log
    assert "PYSPARK_PYTHON=python3 TZ=UTC" in log


def _pyspark_home() -> Path | None:
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        return None
    home = Path(spec.origin).parent
    return home if (home / "bin" / "spark-submit").exists() else None


@pytest.mark.slow
@pytest.mark.skipif(_pyspark_home() is None, reason="pyspark is not installed")
@pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs java")
def test_real_pyspark_job_runs_in_local_mode(tmp_path: Path, mflow: MflowRunner) -> None:
    (tmp_path / "count.py").write_text(
        "import sys\n"
        "from pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.getOrCreate()\n"
        "n = spark.range(int(sys.argv[1])).filter('id % 2 = 0').count()\n"
        "open(sys.argv[2], 'w').write(str(n))\n"
        "spark.stop()\n"
    )
    write_dag(
        tmp_path,
        [
            {
                "id": "count",
                "type": "spark",
                "master": "local[1]",
                "name": "mflow-test",
                "confs": [{"key": "spark.ui.enabled", "value": "false"}],
                "ingestor-file": "count.py",
                "parameters": [{"parameter": 10}, {"parameter": str(tmp_path / "out.txt")}],
                "env": {"PYSPARK_PYTHON": sys.executable},
                "timeout": "5m",
            }
        ],
    )
    result = mflow(env={"SPARK_HOME": str(_pyspark_home())}, timeout=300)
    log = (tmp_path / "logs" / "master_1_task_count.log").read_text()
    assert result.code == 0, log
    assert (tmp_path / "out.txt").read_text() == "5"
