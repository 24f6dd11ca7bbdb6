"""Option values for the CLI without pydantic: `MflowTyper`, a `typer.Typer` for mflow's apps.

Typer (0.2x) coerces every option value, `None` included, through a pydantic `TypeAdapter`
that it builds the first time a parameter is processed (even its own `--help` flag, on every
command); importing pydantic for that costs 0.1-0.2 s of CPU, more than the rest of mflow's
start-up, on every cron start and every child run. mflow's options take only strings,
paths, integers, flags and choices, so the commands of an `MflowTyper` give each parameter a
coercion that needs no pydantic (`PlainValues`). It handles only values that typer would
accept; anything else (`-j 0`, `-j x`, `--format nope`...) goes to typer's own coercion, so
results and error messages stay typer's.

The hook relies on two typer internals: the `type_descriptor` of its parameters and their
lazily built `_runtime_param`. If a typer release changes them, nothing is installed and
typer coerces as before, only slower; `tests/cli/test_startup.py` notices.

`MflowGroup` also keeps two habits of typer's from surprising users: a closed stdout
(`mflow runs | head`) ends the command quietly with exit 0 instead of 1, and a file name where
a command is expected (`mflow dag.yaml`) gets a hint instead of only "No such command".
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

try:
    from typer._coercion import build_runtime_param
    from typer._param_types import coerce_cli_choice, coerce_cli_path
except ImportError:  # another typer: keep its own coercion
    build_runtime_param = None  # type: ignore[assignment]


class MflowTyper(typer.Typer):
    """A `typer.Typer` whose group and commands coerce plain values without pydantic."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", MflowGroup)
        super().__init__(**kwargs)

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[Any], Any]:
        kwargs.setdefault("cls", MflowCommand)
        return super().command(name, **kwargs)


class MflowGroup(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return install(super().get_params(ctx))

    def invoke(self, ctx: Any) -> Any:
        # typer turns a closed stdout (`mflow runs | head -2`) into exit 1, as if something
        # had failed: the reader having had enough is not a failure.
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            silence_stdout()
            raise typer.Exit(0) from None

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and self.get_command(ctx, name) is None and _looks_like_a_file(name):
            raise typer.BadParameter(
                f"'{name}' is not a command; to run that DAG: "
                f"mflow --taskfile {name}  (or: mflow run {name})"
            )
        return super().resolve_command(ctx, args)


def _looks_like_a_file(name: str) -> bool:
    return name.endswith((".json", ".yaml", ".yml")) or "/" in name or Path(name).is_file()


def silence_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a closed pipe goes nowhere,
    instead of failing again when Python flushes it at exit."""
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class MflowCommand(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return install(super().get_params(ctx))


def install(params: list[Any]) -> list[Any]:
    """Give each parameter `PlainValues` coercion unless typer has built its own already
    (`get_params` also returns the `--help` option, which is created on first use)."""
    if build_runtime_param is not None:
        for param in params:
            if getattr(param, "_runtime_param", False) is None and PlainValues.handles(param):
                param._runtime_param = PlainValues(param)
    return params


class PlainValues:
    """Typer's coercion of one parameter: done here for plain values, by typer otherwise."""

    def __init__(self, param: Any) -> None:
        self.descriptor = param.type_descriptor
        self.info = self.descriptor.parameter_info
        self.annotation = self.descriptor.annotation
        self.fallback: Any = None

    @staticmethod
    def handles(param: Any) -> bool:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or param.multiple or param.nargs != 1:
            return False
        info = descriptor.parameter_info
        if info.parser is not None or descriptor.file_annotation is not None:
            return False
        annotation = descriptor.annotation
        if annotation in (str, Path, bool):
            return True
        if annotation is int:
            return not info.clamp
        return isinstance(annotation, type) and issubclass(annotation, Enum)

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        if value is None:  # an option not given
            return None
        try:
            return self._plain(value, param, ctx)
        except _NotPlain:
            pass
        if self.fallback is None:
            assert build_runtime_param is not None
            self.fallback = build_runtime_param(self.descriptor)
        return self.fallback.coerce(value, param=param, ctx=ctx)

    def _plain(self, value: Any, param: Any, ctx: Any) -> Any:
        annotation = self.annotation
        if annotation is str or annotation is bool:
            if isinstance(value, annotation):
                return value
        elif annotation is Path:
            if isinstance(value, str) and value:
                value = Path(value)  # what pydantic would make of it
            if isinstance(value, Path):  # then typer's checks (`exists`, `readable`...)
                return coerce_cli_path(value, self.info, path_type=Path, param=param, ctx=ctx)
        elif annotation is int:
            number = _plain_int(value)
            low, high = self.info.min, self.info.max
            if (
                number is not None
                and (low is None or number >= low)
                and (high is None or number <= high)
            ):
                return number
        elif isinstance(value, annotation):  # an Enum member: the default
            return value
        elif isinstance(value, str):
            try:
                return coerce_cli_choice(
                    value,
                    choices=list(annotation),
                    case_sensitive=self.info.case_sensitive,
                    ctx=ctx,
                )
            except ValueError:
                pass
        raise _NotPlain


class _NotPlain(Exception):
    pass


def _plain_int(value: Any) -> int | None:
    """An int, or the decimal digits of one ("12"; not "012", " 12", "+12", "1_2")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if value == "0" or not value.startswith("0"):
            return int(value)
    return None
