"""The task type registry: built-in types by lazy import string, plugins by entry point.

Third-party types register in the `mflow.task_types` entry point group
(`mytype = "my_package.module:MyTaskType"`); they are discovered once per process and only
imported when a DAG uses them or their schema is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from mflow.tasks.base import TaskType

ENTRY_POINT_GROUP = "mflow.task_types"

BUILTIN: dict[str, str] = {
    "bash": "mflow.tasks.shell:BashTask",
    "command": "mflow.tasks.shell:CommandTask",
    "sql": "mflow.tasks.sql:SqlTask",
    "oracle": "mflow.tasks.sql:SqlTask",
    "spark": "mflow.tasks.spark:SparkTask",
    "mflow": "mflow.tasks.child:ChildRunTask",
    "gsql_batch": "mflow.tasks.tigergraph:GsqlBatchTask",
    "gsql_stream": "mflow.tasks.tigergraph:GsqlStreamTask",
    "runjob": "mflow.tasks.runjob:RunjobTask",
}


@cache
def _entry_points() -> dict[str, EntryPoint]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in BUILTIN}


def known_types() -> list[str]:
    return [*BUILTIN, *_entry_points()]


def is_known(name: str) -> bool:
    """Whether `name` is a task type; plugins are looked for only when it is not built in
    (finding them reads every installed distribution's metadata)."""
    return name in BUILTIN or name in _entry_points()


@cache
def get(name: str) -> TaskType:
    """The shared instance of task type `name` (KeyError when unknown)."""
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        cls = getattr(import_module(module), attr)
    else:
        entry = _entry_points()[name]
        try:
            cls = entry.load()
        except Exception as exc:  # a broken install: say which plugin, not a traceback
            from mflow.errors import PluginError

            where = f" ({entry.dist.name} {entry.dist.version})" if entry.dist else ""
            raise PluginError(
                f"task type '{name}': its plugin {entry.value}{where} cannot be loaded: "
                f"{type(exc).__name__}: {exc}"
            ) from None
    return cls()


def plugin_schemas() -> Mapping[str, Mapping[str, Any] | None]:
    """Each plugin type's schema fragment (None when it describes no fields)."""
    return {name: get(name).schema for name in _entry_points()}
