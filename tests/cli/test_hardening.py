"""Hardening (issue 13), from the outside: secrets in every URL form, faults that give one line
and the right exit code, inputs that validate and then run, private files. Each test failed on
the code before its fix."""

from __future__ import annotations

import json
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
