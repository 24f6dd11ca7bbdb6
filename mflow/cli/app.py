"""The `mflow` app and what its commands share: the options, the files given before a
subcommand, opening the store.

(No `from __future__ import annotations`: see mflow/cli/__init__.py.)
"""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mflow.cli.values import MflowTyper

if TYPE_CHECKING:
    from mflow.state.base import StateStore

app = MflowTyper(
    name="mflow",
    help="Run a DAG of tasks described in files (default: ./tasks.json).",
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="config.json (default: ./config.json if present).", show_default=False
    ),
]
TaskfileOpt = Annotated[
    Path | None,
    typer.Option("--taskfile", "-f", help="The DAG (default: ./tasks.json).", show_default=False),
]
DatasourcesOpt = Annotated[
    Path | None,
    typer.Option(
        "--datasources", help="Connections (default: ./oracle.json if present).", show_default=False
    ),
]
StateOpt = Annotated[
    str | None,
    typer.Option(
        "--state", help="State store URL (overrides MFLOW_STATE and the files).", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


@dataclass
class FileOptions:
    """File options given before a subcommand (`mflow --taskfile x validate`)."""

    config: Path | None = None
    taskfile: Path | None = None
    datasources: Path | None = None
    state: str | None = None


def given(ctx: typer.Context) -> FileOptions:
    """The file options given before the subcommand (none: all None)."""
    return ctx.obj if isinstance(ctx.obj, FileOptions) else FileOptions()


def files_for(
    ctx: typer.Context, config: Path | None, taskfile: Path | None, datasources: Path | None
) -> tuple[Path | None, Path | None, Path | None]:
    outer = given(ctx)
    return (config or outer.config, taskfile or outer.taskfile, datasources or outer.datasources)


def store_for(
    ctx: typer.Context, state: str | None, config: Path | None, datasources: Path | None
) -> "StateStore":
    from mflow.project import open_store_from_files

    outer = given(ctx)
    return open_store_from_files(
        state or outer.state, config or outer.config, datasources or outer.datasources
    )


def stdout_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
