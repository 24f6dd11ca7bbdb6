"""Secrets from the `mflow` command (SPEC §7): `mflow crypt encrypt|decrypt` (passkey from
`MFLOW_PASSKEY` or a hidden prompt, never an argument), ciphertext compatible with OpenDataFlow's
Cryptor, `${VAR}` and `encrypted_password` in datasources, and no password, token or passkey in
any output, log, status, store or task environment of a run that uses them."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from integration.tg_stub import TigerGraphStub, running
from mflow_cli import MflowRunner, Result, Terminal, clean_env

from mflow.secrets import decrypt

PASSKEY = "Pk-7Rw2-passkey-never-shown"
PASSWORD = "Pw-enc-91zQ-never-shown"  # the clear text of an encrypted_password
ENV_PASSWORD = "Pw-env-44kX-never-shown"  # a password given as ${ENV_DB_PW}
INLINE_PASSWORD = "Pw-url-3mTt-never-shown"  # a password inside a URL, as ${PG_PW}
WRONG_PASSKEY = "Pk-wrong-0Lq5-never-shown"

# Made once with the `cryptography` library alone (key = SHA-512(passkey)[:32], nonce
# 00 01 .. 0b prepended, base64), the way OpenDataFlow's Cryptor writes an encrypted password.
VECTOR_PASSKEY = "OpenDataFlow passkey"
VECTOR_PLAINTEXT = "tiger/Scott@1521"
VECTOR = "AAECAwQFBgcICQoLU6UTmZZbtmm2m8JEbugapXMM6UB49ljAyHclg3Sy0KY="


def cryptor_encrypt(plaintext: str, passkey: str, nonce: bytes | None = None) -> str:
    """The Cryptor's format, written here independently of mflow.secrets."""
    key = hashlib.sha512(passkey.encode("utf-8")).digest()[:32]
    nonce = os.urandom(12) if nonce is None else nonce
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode("utf-8"), None)
    return base64.b64encode(nonce + sealed).decode("ascii")


def cryptor_decrypt(text: str, passkey: str) -> str:
    raw = base64.b64decode(text, validate=True)
    key = hashlib.sha512(passkey.encode("utf-8")).digest()[:32]
    return AESGCM(key).decrypt(raw[:12], raw[12:], None).decode("utf-8")


def assert_hidden(secrets: Mapping[str, str], where: str, text: str) -> None:
    """No secret in `text` (the message names the secret and the place, not the text)."""
    for name, value in secrets.items():
        assert value not in text, f"{name} appears in {where}"


# --------------------------------------------------------------------------- mflow crypt


def test_known_vector_decrypts(mflow: MflowRunner) -> None:
    assert cryptor_encrypt(VECTOR_PLAINTEXT, VECTOR_PASSKEY, bytes(range(12))) == VECTOR
    result = mflow("crypt", "decrypt", env={"MFLOW_PASSKEY": VECTOR_PASSKEY}, input=f"{VECTOR}\n")
    assert result == (0, f"{VECTOR_PLAINTEXT}\n", "")


def test_the_seed_format_is_made_for_opendataflows_cryptor_and_decrypts(
    mflow: MflowRunner,
) -> None:
    env = {"MFLOW_PASSKEY": PASSKEY}
    first = mflow("crypt", "encrypt", "--kdf", "sha512", env=env, input=f"{PASSWORD}\n")
    second = mflow("crypt", "encrypt", "--kdf", "sha512", env=env, input=f"{PASSWORD}\n")
    assert first.code == 0 and second.code == 0, first.stderr + second.stderr
    (ciphertext,) = first.out_lines
    assert second.out_lines != [ciphertext]  # a fresh random nonce each time
    # 12-byte nonce + ciphertext as long as the text + 16-byte tag, and the Cryptor reads it.
    assert len(base64.b64decode(ciphertext)) == 12 + len(PASSWORD) + 16
    assert cryptor_decrypt(ciphertext, PASSKEY) == PASSWORD
    back = mflow("crypt", "decrypt", env=env, input=f"{ciphertext}\n")
    assert back == (0, f"{PASSWORD}\n", "")
    for result in (first, second):
        assert_hidden({"passkey": PASSKEY, "password": PASSWORD}, "crypt encrypt", str(result))


def test_new_secrets_are_salted_with_scrypt_by_default_and_decrypt(mflow: MflowRunner) -> None:
    from mflow.secrets import SCRYPT_PREFIX

    env = {"MFLOW_PASSKEY": PASSKEY}
    first = mflow("crypt", "encrypt", env=env, input=f"{PASSWORD}\n")
    second = mflow("crypt", "encrypt", env=env, input=f"{PASSWORD}\n")
    (ciphertext,) = first.out_lines
    assert ciphertext.startswith(SCRYPT_PREFIX)
    raw = base64.b64decode(ciphertext.removeprefix(SCRYPT_PREFIX))
    assert len(raw) == 16 + 12 + len(PASSWORD) + 16  # salt, nonce, ciphertext, tag
    assert raw[:16] != base64.b64decode(second.out_lines[0].removeprefix(SCRYPT_PREFIX))[:16]
    assert mflow("crypt", "decrypt", env=env, input=f"{ciphertext}\n") == (0, f"{PASSWORD}\n", "")
    wrong = mflow("crypt", "decrypt", env={"MFLOW_PASSKEY": "other"}, input=f"{ciphertext}\n")
    assert wrong.code == 2 and "wrong passkey" in wrong.stderr


@pytest.mark.parametrize(
    ("ciphertext", "why"),
    [
        (cryptor_encrypt(PASSWORD, PASSKEY), "wrong passkey, or the ciphertext was altered"),
        ("not base64 at all!", "not base64"),
        (base64.b64encode(b"short").decode(), "too short to be AES-GCM ciphertext"),
    ],
    ids=["wrong-passkey", "not-base64", "too-short"],
)
def test_decrypt_failure_exits_2_with_one_line_and_no_traceback(
    mflow: MflowRunner, ciphertext: str, why: str
) -> None:
    result = mflow(
        "crypt", "decrypt", env={"MFLOW_PASSKEY": WRONG_PASSKEY}, input=f"{ciphertext}\n"
    )
    assert result == (2, "", f"cannot decrypt: {why}\n")
    assert_hidden({"passkey": PASSKEY, "wrong passkey": WRONG_PASSKEY}, "stderr", result.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ("crypt", "encrypt", "--passkey", PASSKEY),
        ("crypt", "decrypt", "--passkey", PASSKEY),
        ("crypt", "encrypt", PASSKEY),
        ("crypt", "decrypt", PASSKEY),
    ],
    ids=["encrypt-option", "decrypt-option", "encrypt-argument", "decrypt-argument"],
)
def test_the_passkey_is_never_taken_from_the_command_line(
    mflow: MflowRunner, args: tuple[str, ...]
) -> None:
    # MFLOW_PASSKEY is set so that nothing could prompt on the developer's terminal.
    result = mflow(*args, env={"MFLOW_PASSKEY": WRONG_PASSKEY}, input=f"{PASSWORD}\n")
    assert result.code == 2
    assert result.stdout == ""
    assert "No such option: --passkey" in result.stderr or "unexpected extra argument" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


IN_ORDER = "without a terminal, each secret is a line of stdin, in the order asked"


@pytest.mark.parametrize(
    ("command", "stdin", "message"),
    [
        ("encrypt", "", f"stdin ended before the passkey ({IN_ORDER})"),
        ("encrypt", f"{PASSKEY}\n", f"stdin ended before the passkey, a second time ({IN_ORDER})"),
        ("encrypt", f"{PASSKEY}\n{PASSKEY}\n", f"stdin ended before the password ({IN_ORDER})"),
        ("decrypt", f"{PASSKEY}\n", f"stdin ended before the encrypted_password ({IN_ORDER})"),
        ("decrypt", "\n", "the passkey is empty (or set MFLOW_PASSKEY)"),
    ],
    ids=["nothing", "passkey-once", "no-password", "no-ciphertext", "empty-passkey"],
)
def test_crypt_reading_stdin_says_what_was_missing(
    mflow: MflowRunner, command: str, stdin: str, message: str
) -> None:
    # stdin is a pipe (not a terminal): every secret is read from it, in order.
    assert mflow("crypt", command, input=stdin) == (2, "", f"{message}\n")


def test_crypt_help_offers_no_passkey_option(mflow: MflowRunner) -> None:
    for command in ("encrypt", "decrypt"):
        result = mflow("crypt", command, "--help")
        assert result.code == 0
        assert "--passkey" not in result.stdout


@pytest.fixture
def crypt_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment without MFLOW_PASSKEY, so that mflow crypt prompts."""
    return clean_env(tmp_path / "mflow-home")


def test_hidden_prompts_read_passkey_and_password_without_echo(
    tmp_path: Path, crypt_env: dict[str, str]
) -> None:
    term = Terminal.start(tmp_path, crypt_env, "crypt", "encrypt")
    term.expect("passkey: ")
    # What `ps` shows while mflow waits for the passkey: the command, nothing else.
    cmdline = Path(f"/proc/{term.process.pid}/cmdline").read_bytes().split(b"\0")[:-1]
    assert [a.decode() for a in cmdline] == [sys.executable, "-m", "mflow", "crypt", "encrypt"]
    shown = subprocess.run(
        ["ps", "-o", "args=", "-p", str(term.process.pid)], capture_output=True, text=True
    ).stdout
    assert shown.split() == [sys.executable, "-m", "mflow", "crypt", "encrypt"]
    term.send(PASSKEY)
    term.expect("passkey again: ")
    term.send(PASSKEY)
    term.expect("password: ")
    term.send(PASSWORD)
    code, screen = term.finish()
    assert code == 0, screen
    assert_hidden({"passkey": PASSKEY, "password": PASSWORD}, "the terminal (echo)", screen)
    assert "may be echoed" not in screen
    ciphertext = screen.split()[-1]
    assert decrypt(ciphertext, PASSKEY) == PASSWORD

    term = Terminal.start(tmp_path, crypt_env, "crypt", "decrypt")
    term.expect("passkey: ")
    term.send(PASSKEY)
    term.expect("encrypted_password: ")
    term.send(ciphertext)
    code, screen = term.finish()
    assert code == 0, screen
    assert "passkey again" not in screen  # decrypting asks once
    assert screen.split()[-1] == PASSWORD
    assert_hidden({"passkey": PASSKEY}, "the terminal (echo)", screen)


def test_prompted_passkeys_that_differ_exit_2(tmp_path: Path, crypt_env: dict[str, str]) -> None:
    term = Terminal.start(tmp_path, crypt_env, "crypt", "encrypt")
    term.expect("passkey: ")
    term.send(PASSKEY)
    term.expect("passkey again: ")
    term.send(WRONG_PASSKEY)
    code, screen = term.finish()
    assert code == 2
    assert "the passkeys differ" in screen
    assert "Traceback" not in screen
    assert_hidden({"passkey": PASSKEY, "other": WRONG_PASSKEY}, "the terminal", screen)


def test_prompts_read_stdin_when_there_is_no_terminal(
    tmp_path: Path, crypt_env: dict[str, str]
) -> None:
    def crypt(command: str, stdin: str) -> Result:
        done = subprocess.run(
            [sys.executable, "-m", "mflow", "crypt", command],
            cwd=tmp_path,
            env=crypt_env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            start_new_session=True,  # no controlling terminal: the lines come from stdin
        )
        return Result(done.returncode, done.stdout, done.stderr)

    sealed = crypt("encrypt", f"{PASSKEY}\n{PASSKEY}\n{PASSWORD}\n")
    assert sealed.code == 0, sealed.stderr
    (ciphertext,) = sealed.out_lines
    assert decrypt(ciphertext, PASSKEY) == PASSWORD
    opened = crypt("decrypt", f"{PASSKEY}\n{ciphertext}\n")
    assert opened.code == 0 and opened.stdout == f"{PASSWORD}\n", opened.stderr
    for result in (sealed, opened):
        assert_hidden({"passkey": PASSKEY}, "crypt output", str(result))
        assert result.stderr == ""  # no prompt, no warning that the input may be echoed


# --------------------------------------------------------------------------- ${VAR}


def test_env_var_in_a_datasource_url_and_password(tmp_path: Path, mflow: MflowRunner) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "oracle.json").write_text(
        json.dumps(
            {
                "connections": [
                    {
                        "name": "wh",
                        "url": "sqlite:///${DATA_DIR}/${DB_NAME}.db",
                        "password": "${ENV_DB_PW}",
                    }
                ]
            }
        )
    )
    (tmp_path / "dags" / "tasks.json").write_text(
        json.dumps(
            {
                "tasks": [
                    {"id": "mk", "type": "sql", "db": "wh", "command": "CREATE TABLE t (x INT)"}
                ]
            }
        )
    )
    env = {"DATA_DIR": str(data), "DB_NAME": "wh", "ENV_DB_PW": ENV_PASSWORD}
    result = mflow(cwd=tmp_path / "dags", env=env)
    assert result.code == 0, result.stdout + result.stderr
    assert (data / "wh.db").exists()  # ${DATA_DIR} expanded, not taken as a relative path
    assert not (tmp_path / "dags" / "${DATA_DIR}").exists()

    unset = mflow("--oneshot", "mk", cwd=tmp_path / "dags", env={"DB_NAME": "wh"})
    assert unset.code == 1
    tree = json.loads(mflow("status", "--json", cwd=tmp_path / "dags").stdout)
    assert tree["tasks"][0]["reason"] == (
        "environment variable ENV_DB_PW is not set (needed by connection 'wh')"
    )


# --------------------------------------------------------------------------- end to end

CHILD_DAG = {
    "name": "secrets_child",
    "tasks": [
        {"id": "count", "type": "sql", "db": "wh", "command": "SELECT count(*) AS n FROM t"},
        {"id": "child_env", "type": "bash", "command": "env > child_env.txt"},
    ],
}


@dataclass
class SecretProject:
    """A DAG whose connections use every kind of secret, and the environment it runs in."""

    root: Path
    env: dict[str, str]
    stub: TigerGraphStub

    @property
    def secrets(self) -> dict[str, str]:
        return {
            "the passkey": PASSKEY,
            "the decrypted password": PASSWORD,
            "the ${ENV_DB_PW} password": ENV_PASSWORD,
            "the password in the URL": INLINE_PASSWORD,
            "the TigerGraph secret": self.stub.secret,
            "the TigerGraph token": self.stub.token,
        }


@pytest.fixture
def secret_project(tmp_path: Path) -> Iterator[SecretProject]:
    encrypted = cryptor_encrypt(PASSWORD, PASSKEY)  # as OpenDataFlow's Cryptor writes it
    with running() as stub:
        connections: list[dict[str, Any]] = [
            {"name": "wh", "url": "sqlite:///wh.db", "encrypted_password": encrypted},
            {"name": "envdb", "url": "sqlite:///env.db", "password": "${ENV_DB_PW}"},
            {
                "name": "graph",
                "kind": "tigergraph",
                "host": stub.host,
                "port": stub.port,
                "secret": "${TG_SECRET}",
            },
            # Nothing listens on port 1: connecting fails, with the password at hand.
            {
                "name": "gone",
                "url": "postgresql+psycopg://etl@127.0.0.1:1/nowhere",
                "encrypted_password": encrypted,
            },
            {"name": "gone_inline", "url": "postgresql+psycopg://etl:${PG_PW}@127.0.0.1:1/x"},
        ]
        (tmp_path / "oracle.json").write_text(json.dumps({"connections": connections}))
        (tmp_path / "child.json").write_text(json.dumps(CHILD_DAG))
        tasks = [
            {
                "id": "mk",
                "type": "sql",
                "db": "wh",
                "command": "CREATE TABLE IF NOT EXISTS t (x INT); INSERT INTO t VALUES (1); "
                "SELECT * FROM t",
            },
            {"id": "envq", "type": "sql", "db": "envdb", "command": "SELECT 2 AS two"},
            {
                "id": "load",
                "type": "gsql_batch",
                "db": "graph",
                "graph": stub.graph,
                "job_name": "load_people",
            },
            {"id": "dump", "type": "bash", "command": "env > task_env.txt", "depends": ["mk"]},
            {"id": "kid", "type": "mflow", "taskfile": "child.json", "depends": ["mk"]},
            {"id": "bad", "type": "sql", "db": "gone", "command": "SELECT 1"},
            {"id": "bad_inline", "type": "sql", "db": "gone_inline", "command": "SELECT 1"},
        ]
        (tmp_path / "tasks.json").write_text(json.dumps({"name": "secrets", "tasks": tasks}))
        env = {
            "MFLOW_PASSKEY": PASSKEY,
            "ENV_DB_PW": ENV_PASSWORD,
            "PG_PW": INLINE_PASSWORD,
            "TG_SECRET": stub.secret,
        }
        yield SecretProject(tmp_path, env, stub)


def everything_written(root: Path) -> dict[str, str]:
    """Every file a run left: logs, env dumps, databases and the state store (as text)."""
    inputs = {"oracle.json", "tasks.json", "child.json"}
    return {
        str(p.relative_to(root)): p.read_bytes().decode("utf-8", errors="replace")
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in inputs
    }


def env_dump(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


@pytest.mark.slow
def test_no_secret_in_any_output_of_a_run_that_uses_them(
    secret_project: SecretProject, mflow: MflowRunner
) -> None:
    project, env = secret_project, secret_project.env
    outputs: dict[str, Result] = {}

    outputs["validate"] = mflow("validate", env=env)
    assert outputs["validate"].stdout == "OK: 7 tasks, 2 edges\n", outputs["validate"].stderr
    outputs["dry-run"] = mflow("--dry-run", env=env)
    assert outputs["dry-run"].code == 0, outputs["dry-run"].stderr
    assert not (project.root / "logs").exists()

    def run(name: str, *args: str, run_env: Mapping[str, str] = env) -> dict[str, Any]:
        """`mflow ARGS`, then `status` and `status --json` of that run; the status tree."""
        outputs[name] = mflow(*args, env=run_env)
        assert outputs[name].code == 1, outputs[name].stdout + outputs[name].stderr
        outputs[f"status after {name}"] = mflow("status", "--dag", "secrets", env=env)
        outputs[f"status --json after {name}"] = status = mflow(
            "status", "--dag", "secrets", "--json", env=env
        )
        assert status.code == 0, status.stderr
        return dict(json.loads(status.stdout))

    tree = run("run")
    # The secrets were used: decrypted, expanded, handed to TigerGraph and to the child run.
    states = {t["task_id"]: t["state"] for t in tree["tasks"]}
    assert states == {
        "mk": "SUCCESS",
        "envq": "SUCCESS",
        "load": "SUCCESS",
        "dump": "SUCCESS",
        "kid": "SUCCESS",
        "bad": "FAILED",
        "bad_inline": "FAILED",
    }
    (child,) = next(t["children"] for t in tree["tasks"] if t["task_id"] == "kid")
    assert {t["task_id"]: t["state"] for t in child["tasks"]} == {
        "count": "SUCCESS",
        "child_env": "SUCCESS",
    }
    assert project.stub.requests[0].query == {"secret": project.stub.secret}
    reasons = {t["task_id"]: t["reason"] for t in tree["tasks"]}
    assert reasons["bad"].startswith("cannot connect to 'gone': ")
    assert reasons["bad_inline"].startswith("cannot connect to 'gone_inline': ")
    first_run = str(tree["run"]["id"])
    for task in ("mk", "load", "bad", "bad_inline"):
        outputs[f"logs {task}"] = mflow("logs", first_run, task, "--json", env=env)
        assert outputs[f"logs {task}"].code == 0

    tree = run("run --json", "--json")
    events = [json.loads(line) for line in outputs["run --json"].out_lines]
    assert events[-1]["event"] == "RunEnded"
    assert {t["task_id"]: t["state"] for t in tree["tasks"]} == states

    # A wrong passkey and an unset ${VAR}: the task fails saying why, with no secret.
    tree = run("wrong passkey", "--oneshot", "mk", run_env={**env, "MFLOW_PASSKEY": WRONG_PASSKEY})
    assert tree["tasks"][0]["reason"] == (
        "cannot decrypt the password of connection 'wh': wrong passkey, or the ciphertext "
        "was altered"
    )
    unset = {k: v for k, v in env.items() if k != "ENV_DB_PW"}
    tree = run("unset var", "--oneshot", "envq", run_env=unset)
    assert tree["tasks"][0]["reason"] == (
        "environment variable ENV_DB_PW is not set (needed by connection 'envdb')"
    )
    outputs["runs"] = mflow("runs", env=env)
    outputs["runs --json"] = mflow("runs", "--json", env=env)

    secrets = {**project.secrets, "the wrong passkey": WRONG_PASSKEY}
    for name, result in outputs.items():
        assert "Traceback" not in result.stderr, name
        assert_hidden(secrets, f"the output of `mflow {name}`", result.stdout + result.stderr)
    files = everything_written(project.root)
    assert {"logs/mflow.log", "logs/master_1_task_mk.log", "logs/master_2_task_count.log"} <= set(
        files
    )
    assert any(name.endswith("state.db") for name in files)
    env_files = {"task_env.txt", "child_env.txt"}
    for name, text in files.items():
        if name not in env_files:
            assert_hidden(secrets, name, text)

    # Tasks never get the passkey, nor anything decrypted; the child run's tasks neither.
    for name in env_files:
        dumped = env_dump(project.root / name)
        assert "MFLOW_PASSKEY" not in dumped, name
        assert dumped["MFLOW_RUN_ID"]  # it is a task's environment
        assert_hidden({**project.secrets, "the wrong passkey": WRONG_PASSKEY}, name, files[name])


def test_env_var_holding_a_password_is_not_passed_to_tasks(
    tmp_path: Path, mflow: MflowRunner
) -> None:
    (tmp_path / "oracle.json").write_text(
        json.dumps(
            {"connections": [{"name": "db", "url": "sqlite:///x.db", "password": "${DB_PW}"}]}
        )
    )
    (tmp_path / "tasks.json").write_text(
        json.dumps(
            {
                "tasks": [
                    {"id": "use", "type": "sql", "db": "db", "command": "SELECT 1"},
                    {"id": "dump", "type": "bash", "command": "env > task_env.txt"},
                ]
            }
        )
    )
    result = mflow(env={"DB_PW": ENV_PASSWORD})
    assert result.code == 0, result.stdout + result.stderr
    assert ENV_PASSWORD not in (tmp_path / "task_env.txt").read_text()
