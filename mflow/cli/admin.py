"""The store's tables and datasource passwords: `mflow db init`, `mflow crypt ...`.

(No `from __future__ import annotations`: see mflow/cli/__init__.py.)
"""

import sys
from enum import Enum
from typing import Annotated

import typer

from mflow.cli.app import (
    ConfigOpt,
    DatasourcesOpt,
    StateOpt,
    app,
    given,
    store_for,
)
from mflow.cli.values import MflowTyper

db_app = MflowTyper(help="The state store's tables.", no_args_is_help=True)
app.add_typer(db_app, name="db")


class Dialect(str, Enum):
    oracle = "oracle"
    postgresql = "postgresql"
    sqlite = "sqlite"


@db_app.command("init")
def db_init(
    ctx: typer.Context,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the DDL instead of running it.")
    ] = False,
    dialect: Annotated[
        Dialect | None,
        typer.Option(
            "--dialect",
            help="With --sql: oracle, postgresql or sqlite (default: the store's own).",
        ),
    ] = None,
    state: StateOpt = None,
    config: ConfigOpt = None,
    datasources: DatasourcesOpt = None,
) -> None:
    """Create the store's tables (idempotent), or print the DDL for a DBA (--sql)."""
    from mflow.errors import ConfigError

    if dialect is not None and not sql:
        raise ConfigError("--dialect says which DDL --sql prints: give --sql too", json_path="")
    if sql:
        from mflow.state.ddl import ddl

        typer.echo(
            ddl(dialect.value if dialect else _store_dialect(ctx, state, config, datasources)),
            nl=False,
        )
        return
    store = store_for(ctx, state, config, datasources)
    try:
        store.init()
    finally:
        store.close()
    typer.echo(f"initialised {store.display_url}")


def _store_dialect(ctx: typer.Context, state, config, datasources) -> str:  # type: ignore[no-untyped-def]
    """The SQL dialect of the store these options name (nothing is connected to)."""
    from mflow.errors import ConfigError
    from mflow.project import load_config, load_datasources
    from mflow.state import locate

    outer = given(ctx)
    location = locate(
        state or outer.state,
        load_config(config or outer.config).state,
        load_datasources(datasources or outer.datasources),
    )
    if location.scheme not in {d.value for d in Dialect}:
        raise ConfigError(
            f"the state store {location.display} is not an SQL database: it has no DDL",
            json_path="",
            hint="give --dialect oracle, postgresql or sqlite",
        )
    return location.scheme


crypt_app = MflowTyper(
    help="Encrypt passwords for datasources (MFLOW_PASSKEY).", no_args_is_help=True
)
app.add_typer(crypt_app, name="crypt")


def _passkey(confirm: bool) -> str:
    import os

    from mflow.errors import ConfigError
    from mflow.secrets import PASSKEY_ENV

    if os.environ.get(PASSKEY_ENV):
        return os.environ[PASSKEY_ENV]
    key = _secret_input("passkey: ", "the passkey")
    if not key:
        raise ConfigError("the passkey is empty", json_path="", hint=f"or set {PASSKEY_ENV}")
    if confirm and _secret_input("passkey again: ", "the passkey, a second time") != key:
        raise ConfigError("the passkeys differ", json_path="")
    return key


def _secret_input(prompt: str, what: str) -> str:
    """A line typed at a prompt that does not echo it, or, when stdin is not a terminal (a
    pipe, cron), the next line of stdin, read without a prompt (getpass would read it too,
    warning that it may be echoed). Every secret of a command comes the same way, in order."""
    import getpass

    if sys.stdin.isatty():
        return getpass.getpass(prompt)
    line = sys.stdin.readline()
    if not line:
        from mflow.errors import ConfigError

        raise ConfigError(
            f"stdin ended before {what}",
            json_path="",
            hint="without a terminal, each secret is a line of stdin, in the order asked",
        )
    return line.rstrip("\n")


class Kdf(str, Enum):
    scrypt = "scrypt"
    sha512 = "sha512"


@crypt_app.command("encrypt")
def crypt_encrypt(
    kdf: Annotated[
        Kdf,
        typer.Option(
            "--kdf",
            help="scrypt: salted, for new secrets; sha512: the seed's format, for tools that "
            "read OpenDataFlow's (both decrypt).",
        ),
    ] = Kdf.scrypt,
) -> None:
    """Read a password (hidden prompt, or one line of stdin) and print its encrypted_password."""
    from mflow.secrets import encrypt

    passkey = _passkey(confirm=True)
    typer.echo(encrypt(_secret_input("password: ", "the password"), passkey, kdf.value))


@crypt_app.command("decrypt")
def crypt_decrypt() -> None:
    """Read an encrypted_password (prompt, or one line of stdin) and print the password."""
    from mflow.errors import ConfigError
    from mflow.secrets import decrypt

    passkey = _passkey(confirm=False)
    sealed = _secret_input("encrypted_password: ", "the encrypted_password")
    try:
        typer.echo(decrypt(sealed, passkey))
    except ValueError as exc:
        raise ConfigError(f"cannot decrypt: {exc}", json_path="") from None
