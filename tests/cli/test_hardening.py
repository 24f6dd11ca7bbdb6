"""Hardening (issue 13), from the outside: secrets in every URL form, faults that give one line
and the right exit code, inputs that validate and then run, private files. Each test failed on
the code before its fix."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from mflow_cli import MflowRunner, Result
from support import bash

SECRET = "S3cr3t-value"


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


def no_secret(result: Result, *files: Path) -> None:
    assert SECRET not in result.stdout + result.stderr, result
    for path in files:
        for found in [path] if path.is_file() else path.rglob("*"):
            if found.is_file():
                assert SECRET not in found.read_text(errors="replace"), found


# ------------------------------------------------------------------ secrets in URLs (1-4)


def test_a_store_password_as_a_query_parameter_is_masked_and_kept_from_tasks(
    tmp_path: Path, mflow: MflowRunner, postgres_url: str
) -> None:
    url = f"{postgres_url}&password={SECRET}"  # trust auth: any password is accepted
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "env > env.txt")]})
    result = mflow("--state", url)
    assert result.code == 0, result
    log = (tmp_path / "logs" / "mflow.log").read_text()
    assert "password=***" in log
    no_secret(result, tmp_path / "logs", tmp_path / "env.txt")


def test_an_unreachable_store_with_a_query_password_says_so_without_it(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "true")]})
    url = f"postgresql+psycopg://u@127.0.0.1:9/db?connect_timeout=2&password={SECRET}"
    result = mflow("--state", url)
    assert result.code == 3 and len(result.err_lines) == 1, result
    assert "password=***" in result.stderr
    no_secret(result)


def test_a_variable_in_a_datasource_urls_query_is_kept_from_tasks(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    write(
        tmp_path / "oracle.json",
        {"connections": [{"name": "pg", "url": "postgresql+psycopg://u@h/db?password=${PGQ}"}]},
    )
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "env > env.txt")]})
    result = mflow(env={"PGQ": SECRET})
    assert result.code == 0, result
    assert "PGQ=" not in (tmp_path / "env.txt").read_text()
    no_secret(result, tmp_path / "env.txt")


def test_a_store_where_mflow_may_not_create_its_tables_is_exit_3_in_one_line(
    tmp_path: Path, mflow: MflowRunner, postgres_url: str
) -> None:
    # A search_path naming no existing schema: PostgreSQL has nowhere to create the tables.
    url = postgres_url.replace("search_path%3Dt_", "search_path%3Dmissing_").replace(
        "search_path=t_", "search_path=missing_"
    )
    assert url != postgres_url
    url = f"{url}&password={SECRET}"
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "touch ran")]})
    for args in (("--state", url), ("runs", "--state", url)):
        result = mflow(*args)
        assert result.code == 3 and len(result.err_lines) == 1, result
        assert "cannot create mflow's tables: no schema has been selected" in result.stderr
        assert "mflow db init --sql" in result.stderr
        no_secret(result)
    assert not (tmp_path / "ran").exists()


def test_zookeeper_credentials_never_reach_the_unreachable_message(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "true")]})
    result = mflow("runs", "--state", f"zk://ops:{SECRET}@127.0.0.1:9/mflow", timeout=60)
    assert result.code == 3, result
    assert result.err_lines == [
        "state store zk://ops:***@127.0.0.1:9/mflow cannot be reached: no ZooKeeper server "
        "answered at 127.0.0.1:9 within 10 s"
    ]


def test_a_schema_error_on_a_connection_never_shows_a_password_holding_a_slash(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    url = f"postgresql://u:{SECRET}/x@h/db"
    write(
        tmp_path / "oracle.json",
        {"connections": [{"name": "x", "url": url, "connection_string": "h:1/s"}]},
    )
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "true")]})
    result = mflow("validate")
    assert result.code == 2 and "u:***@h/db" in result.stderr, result
    no_secret(result)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://user:{SECRET}@host:5432/db",
        f"oracle+oracledb://user:{SECRET}@host:1521/?service_name=X",
        f"postgresql://user@host/db?sslmode=require&password={SECRET}",
        f"postgresql://user@host/db?passwd={SECRET}&x=1",
        f"zk://user:{SECRET}@h1:2181,h2:2181/root",
        f"https://host/x?token={SECRET}",
        f"mysql://user:{SECRET}/with/slash@host/db",
        f"postgresql://user:p@{SECRET}@host/db",
    ],
)
def test_mask_url_hides_the_password_of_every_url_form(url: str) -> None:
    from mflow.secrets import mask_url, url_secrets

    assert SECRET not in mask_url(url)
    assert SECRET not in mask_url(f"error: cannot reach {url}: refused")
    assert any(SECRET in found for found in url_secrets(url))


def test_urls_without_a_password_are_left_as_they_are() -> None:
    from mflow.secrets import mask_url

    for url in ("sqlite:////var/lib/mflow/state.db", "http://host:8080/path", "zk://h:2181/r"):
        assert mask_url(url) == url


# ------------------------------------------------------------------ faults: one line (5-9)

CHATTR = shutil.which("chattr")


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Nobody may write `path`, root included (the tests run as root in CI)."""
    if CHATTR is None or subprocess.run([CHATTR, "+i", str(path)]).returncode != 0:
        pytest.skip("chattr +i is not available on this file system")
    try:
        yield
    finally:
        subprocess.run([CHATTR, "-i", str(path)], check=True)


def test_a_read_only_store_file_is_exit_3_naming_it(tmp_path: Path, mflow: MflowRunner) -> None:
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "true")]})
    db = tmp_path / "state.db"
    assert mflow("--state", f"sqlite:///{db}").code == 0
    with immutable(db):
        result = mflow("--state", f"sqlite:///{db}")
    assert result.code == 3 and result.err_lines == [
        f"state store sqlite:///{db} cannot be written: {db} is read-only "
        "(attempt to write a readonly database)"
    ]


def test_a_damaged_store_file_is_exit_3_and_nothing_else_is_written(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "true")]})
    db = tmp_path / "state.db"
    assert mflow("--state", f"sqlite:///{db}").code == 0
    data = bytearray(db.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)  # every page after the header's
    db.write_bytes(bytes(data))
    for args in ([], ["db", "init"], ["runs"]):
        result = mflow(*args, "--state", f"sqlite:///{db}")
        assert result.code == 3 and len(result.err_lines) == 1, result
        assert result.stderr.startswith(f"the state store sqlite:///{db} is damaged"), result
    assert db.read_bytes() == bytes(data)
    assert "run 2" not in (tmp_path / "logs" / "mflow.log").read_text()


def test_a_log_directory_that_cannot_be_written_is_exit_2_before_anything_is_recorded(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "true")]})
    logs = tmp_path / "frozen"
    logs.mkdir()
    with immutable(logs):
        result = mflow("--log-dir", "frozen")
    assert result.code == 2 and len(result.err_lines) == 1, result
    assert result.stderr.startswith(f"cannot write in the log directory {logs}: ")
    assert mflow("runs").stdout == "no runs\n"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"postgresql+nodriver://u:{SECRET}@h/db", "Can't load plugin"),
        (f"postgresql+psycopg://u:{SECRET}@h:abc/db", "its port is not a number"),
    ],
)
def test_a_store_url_mflow_cannot_use_is_exit_2_naming_it_masked(
    mflow: MflowRunner, url: str, says: str
) -> None:
    result = mflow("runs", "--state", url)
    assert result.code == 2 and len(result.err_lines) == 1, result
    assert result.stderr.startswith("state store URL postgresql+") and "u:***@h" in result.stderr
    assert says in result.stderr
    no_secret(result)


@pytest.mark.parametrize("command", [["validate"], ["--dry-run"], [], ["graph"]])
def test_a_taskfile_that_is_a_symlink_loop_is_exit_2(
    tmp_path: Path, mflow: MflowRunner, command: list[str]
) -> None:
    (tmp_path / "a.json").symlink_to(tmp_path / "b.json")
    (tmp_path / "b.json").symlink_to(tmp_path / "a.json")
    result = mflow(*command, "-f", "a.json")
    assert result.code == 2, result
    assert result.err_lines == [
        f"a.json: cannot read: Too many levels of symbolic links (named by --taskfile; "
        f"looked for {tmp_path / 'a.json'})"
    ]


# ------------------------------------------------------------------ private files (14)


def test_files_mflow_creates_are_its_owners_alone(tmp_path: Path, mflow: MflowRunner) -> None:
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "echo row")]})
    assert mflow("--log-dir", "new/logs").code == 0
    home = tmp_path / "mflow-home"
    modes = {
        p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777)
        for p in [
            home,
            home / "state.db",
            tmp_path / "new",
            tmp_path / "new" / "logs",
            *sorted((tmp_path / "new" / "logs").iterdir()),
        ]
    }
    assert modes == {
        "mflow-home": "0o700",
        "mflow-home/state.db": "0o600",
        "new": "0o700",
        "new/logs": "0o700",
        "new/logs/.mflow-store": "0o600",
        "new/logs/master_1_task_a.log": "0o600",
        "new/logs/mflow.log": "0o600",
    }


def test_a_symlink_planted_as_a_task_log_redirects_nothing(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    write(tmp_path / "tasks.json", {"tasks": [bash("a", f"echo {SECRET}")]})
    (tmp_path / "logs").mkdir()
    target = tmp_path / "elsewhere.txt"
    target.write_text("private\n")
    (tmp_path / "logs" / "master_1_task_a.log").symlink_to(target)
    result = mflow()
    assert result.code == 1
    assert "cannot open the task log" in result.stdout
    assert target.read_text() == "private\n"  # not written through the link
    assert "private" not in result.stdout  # nor shown in the summary
    assert "private" not in mflow("logs", "1", "a").stdout


# ------------------------------------------------------------------ what validates must run


def test_an_id_with_a_trailing_newline_or_too_long_is_refused(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    write(
        tmp_path / "tasks.json",
        {"tasks": [bash("ok\n", "true"), bash("x" * 1_000_000, "true"), bash("fine", "true")]},
    )
    result = mflow("validate")
    assert result.code == 2 and len(result.err_lines) == 2, result.stderr[:2000]
    assert result.err_lines[0].startswith("tasks.json $.tasks[0].id: invalid value 'ok\\n'")
    assert result.err_lines[1].startswith("tasks.json $.tasks[1].id: invalid value 'xxx")
    assert all(len(line) < 400 for line in result.err_lines)
    assert "1 to 200 letters" in result.err_lines[0]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_nul_character_in_a_command_is_refused_at_validation(
    tmp_path: Path, mflow: MflowRunner, suffix: str
) -> None:
    taskfile = tmp_path / f"tasks{suffix}"
    if suffix == ".json":
        write(taskfile, {"tasks": [bash("ok", "true"), bash("n", "echo a\x00b")]})
    else:
        taskfile.write_text('tasks:\n  - {id: n, type: bash, command: "echo a\\0b"}\n')
    for command in (["validate"], []):
        result = mflow(*command, "-f", taskfile.name)
        assert result.code == 2, result
        assert result.err_lines == [
            f"{taskfile.name} $.tasks[{1 if suffix == '.json' else 0}].command: a NUL character "
            "in a string: no command, argument or variable can hold one"
        ]


def test_the_same_problem_a_thousand_times_is_one_line_with_a_count(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "true", *["ghost"] * 1000)]})
    result = mflow("validate")
    assert result.code == 2
    assert result.err_lines == [
        "tasks.json $.tasks[0].depends[0]: unknown task 'ghost' in task 'a' "
        "(known: a; 999 more places like it)"
    ]


# ------------------------------------------------------------------ secrets at rest (15)


def test_validate_with_a_passkey_checks_that_every_encrypted_password_decrypts(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    from mflow.secrets import encrypt

    sealed = {kdf: encrypt(SECRET, "right-passkey", kdf) for kdf in ("scrypt", "sha512")}
    write(
        tmp_path / "oracle.json",
        {
            "connections": [
                {"name": kdf, "url": "postgresql+psycopg://u@h/db", "encrypted_password": text}
                for kdf, text in sealed.items()
            ]
        },
    )
    write(tmp_path / "tasks.json", {"tasks": [bash("a", "true")]})
    assert mflow("validate", env={"MFLOW_PASSKEY": "right-passkey"}).code == 0
    assert mflow("validate").code == 0  # without a passkey nothing can be checked
    wrong = mflow("validate", env={"MFLOW_PASSKEY": "wrong-passkey"})
    assert wrong.code == 2
    assert wrong.err_lines == [
        f"oracle.json $.connections[{i}].encrypted_password: connection '{kdf}': the "
        "encrypted_password does not decrypt with MFLOW_PASSKEY: wrong passkey, or the "
        "ciphertext was altered"
        for i, kdf in enumerate(sealed)
    ]
    no_secret(wrong)


@pytest.mark.parametrize("run_id", ["9223372036854775808", "²", "0"])
def test_a_run_id_no_store_can_hold_is_a_usage_error(mflow: MflowRunner, run_id: str) -> None:
    # Found by fuzzing the HTTP API: a 2**63 id reached SQLite (OverflowError traceback).
    for args in (["status", run_id], ["logs", run_id, "a"], ["--resume", run_id]):
        result = mflow(*args)
        assert result.code == 2 and "Traceback" not in result.stderr, (args, result)
