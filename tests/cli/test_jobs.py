"""`mflow jobs ...`, `mflow cluster ...` and TgFlow's aliases (SPEC §5): JSON keys, exit codes,
messages naming the argument or file, the JSON path and the job."""

from __future__ import annotations

import json
from pathlib import Path

from mflow_cli import MflowRunner, Result

TG_JOB = {"type": "gsql_batch", "graph": "G", "job_name": "J", "db": "tg", "frequency": "1h"}
BASH_JOB = {"type": "bash", "command": "true", "cron": "30 2 * * *", "timezone": "Europe/Madrid"}


def ok(result: Result) -> Result:
    assert result.code == 0, result
    return result


def test_a_tgflow_job_document_loads_unchanged_and_lists_with_the_spec_keys(
    mflow: MflowRunner,
) -> None:
    ok(mflow("jobs", "add", "tg_load", json.dumps(TG_JOB)))
    ok(mflow("add-job", "nightly", json.dumps(BASH_JOB)))
    listed = json.loads(ok(mflow("jobs", "list", "--json")).stdout)
    assert [set(j) for j in listed] == [
        {"name", "schedule", "timezone", "enabled", "next_fire", "last_run_id", "last_state"}
    ] * 2
    nightly, tg_load = listed
    assert (nightly["name"], nightly["schedule"], nightly["timezone"]) == (
        "nightly",
        "cron 30 2 * * *",
        "Europe/Madrid",
    )
    assert (tg_load["schedule"], tg_load["enabled"], tg_load["last_run_id"]) == (
        "every 1h",
        True,
        None,
    )
    assert tg_load["next_fire"] % 3600 == 0  # on the hour, UTC
    assert "nightly" in ok(mflow("list-jobs")).stdout


def test_add_an_existing_job_says_update_and_update_an_unknown_one_names_the_known(
    mflow: MflowRunner,
) -> None:
    ok(mflow("jobs", "add", "a", json.dumps(BASH_JOB)))
    again = mflow("jobs", "add", "a", json.dumps(BASH_JOB))
    assert again.code == 2 and again.err_lines == ["job 'a' exists (mflow jobs update a ...)"]
    ok(mflow("jobs", "update", "a", json.dumps({**BASH_JOB, "cron": "0 3 * * *"})))
    shown = json.loads(ok(mflow("jobs", "show", "a", "--json")).stdout)
    assert shown["document"]["cron"] == "0 3 * * *"
    for command in (
        ["update", "b", json.dumps(BASH_JOB)],
        ["show", "b"],
        ["delete", "b"],
        ["pause", "b"],
        ["history", "b"],
    ):
        result = mflow("jobs", *command)
        assert result.code == 2, (command, result)
        assert result.err_lines == ["unknown job 'b' (known: a)"], command


def test_bad_job_documents_are_one_line_per_problem_exit_2(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    bad = {"type": "bash", "cron": "61 * * * *", "timezone": "Nowhere/City", "catchup": "some"}
    result = mflow("jobs", "add", "x", json.dumps(bad))
    assert result.code == 2
    assert result.err_lines == [
        "argument JSON $.catchup: invalid value 'some' in job 'x' (one of: \"latest\", \"all\", "
        '"none")',
        "argument JSON $.cron: invalid cron expression: [61 * * * *] is not acceptable, out of "
        "range in job 'x'",
        "argument JSON $.timezone: unknown time zone 'Nowhere/City' (an IANA name, like "
        "Europe/Madrid) in job 'x'",
        "argument JSON $: missing required field 'command' in job 'x'",
    ], result
    (tmp_path / "j.json").write_text('{"type": "bash", "command": "true", "frequency": "2x"}')
    from_file = mflow("jobs", "add", "y", "-f", "j.json")
    assert from_file.code == 2 and from_file.err_lines[0].startswith("j.json $.frequency:")
    assert mflow("jobs", "add", "z", "{not json").code == 2


def test_apply_creates_updates_and_prunes(tmp_path: Path, mflow: MflowRunner) -> None:
    ok(mflow("jobs", "add", "old", json.dumps(BASH_JOB)))
    ok(mflow("jobs", "add", "keep", json.dumps(BASH_JOB)))
    (tmp_path / "jobs.json").write_text(json.dumps({"jobs": {"keep": BASH_JOB, "new": TG_JOB}}))
    first = json.loads(ok(mflow("jobs", "apply", "-f", "jobs.json", "--prune", "--json")).stdout)
    assert first == {"added": ["new"], "updated": [], "unchanged": ["keep"], "deleted": ["old"]}
    again = ok(mflow("jobs", "apply", "-f", "jobs.json")).stdout
    assert again == "unchanged: keep, new\n"


def test_pause_resume_and_delete(mflow: MflowRunner) -> None:
    ok(mflow("jobs", "add", "a", json.dumps(BASH_JOB)))
    assert ok(mflow("jobs", "pause", "a")).stdout == "job a paused\n"
    (view,) = json.loads(ok(mflow("jobs", "list", "--json")).stdout)
    assert (view["enabled"], view["next_fire"]) == (False, None)
    ok(mflow("jobs", "resume", "a"))
    assert json.loads(ok(mflow("jobs", "list", "--json")).stdout)[0]["enabled"] is True
    ok(mflow("delete-job", "a"))
    assert ok(mflow("jobs", "list")).stdout.startswith("no jobs")


def test_trigger_prints_the_run_id_and_history_has_the_spec_keys(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    ok(mflow("jobs", "add", "hello", json.dumps({"type": "bash", "command": "echo hi"})))
    run_id = int(ok(mflow("jobs", "trigger", "hello", "--wait")).stdout)
    (row,) = json.loads(ok(mflow("jobs", "history", "hello", "--json")).stdout)
    assert set(row) == {"slot", "outcome", "reason", "run_id", "state", "host"}
    assert (row["outcome"], row["run_id"], row["state"]) == ("FIRED", run_id, "SUCCESS")
    assert "hi" in ok(mflow("logs", str(run_id), "hello")).stdout


def test_cluster_status_with_no_scheduler(mflow: MflowRunner) -> None:
    assert json.loads(ok(mflow("cluster", "status", "--json")).stdout) == {
        "leader": None,
        "followers": [],
    }
    assert ok(mflow("cluster-status")).stdout == "leader: none\nmembers: none\n"
    assert ok(mflow("show-leader")).stdout == "no leader\n"
    assert ok(mflow("list-followers", "--json")).stdout.strip() == "[]"
