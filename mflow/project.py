"""Loading the files: where config.json, tasks.json and the datasources are read and checked.

`load_project` reads the three files, validates each against its schema, builds the frozen
dataclasses of `mflow.config` and runs the semantic checks (duplicate ids, unknown types and
connections, unknown dependencies, cycles). Every problem in every file is collected and raised
at once as `InvalidInput`; nothing is half-loaded. `load_config` and `load_datasources` read
one file alone, and `open_store_from_files` opens the state store those files name (for the
commands that query the store rather than run a DAG).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from mflow import config as cfg
from mflow.errors import ConfigError, InvalidInput, SchemaError, UnknownTaskType
from mflow.files import resolved

if TYPE_CHECKING:
    from mflow.state.base import StateStore


@dataclass(frozen=True)
class FileArg:
    """A file option: the path, how to show it, and whether the user named it."""

    path: Path
    display: str
    named: bool

    @classmethod
    def of(cls, value: str | Path | None, default: str) -> FileArg:
        if value is None:
            return cls(Path(default), default, named=False)
        return cls(Path(value), str(value), named=True)


_OPTIONS = {"config": "--config", "tasks": "--taskfile", "datasources": "--datasources"}


def _read(
    arg: FileArg, kind: str, problems: list[ConfigError], texts: dict[str, str] | None = None
) -> Any:
    """The parsed, schema-checked document; None when absent (allowed) or broken. Its text
    goes into `texts[kind]` when asked."""
    from mflow import schema

    if not arg.named and not arg.path.exists():
        return None
    try:
        text = cfg.read_text(arg.path, arg.display)
        doc = cfg.parse_document(text, arg.path, arg.display)
    except ConfigError as exc:
        if exc.hint is None and not arg.path.exists():
            exc.hint = f"named by {_OPTIONS[kind]}; looked for {arg.path.absolute()}"
        problems.append(exc)
        return None
    if texts is not None:
        texts[kind] = text
    plugins = kind == "tasks" and _uses_plugin_types(doc)
    found = schema.validator(kind, plugins=plugins).problems(doc, arg.display)
    problems.extend(found)
    return None if found else doc


def _uses_plugin_types(doc: Any) -> bool:
    """Whether a tasks document may need the plugin task types (any task whose type is not
    a built-in one, a missing or broken type included)."""
    from mflow.tasks.registry import BUILTIN

    tasks = doc.get("tasks") if isinstance(doc, dict) else None
    if not isinstance(tasks, list):
        return True
    return any(
        not isinstance(t, dict) or not isinstance(t.get("type"), str) or t["type"] not in BUILTIN
        for t in tasks
    )


def load_config(value: str | Path | None) -> cfg.Config:
    """config.json alone (also used to re-read it during a run). Raises InvalidInput."""
    arg = FileArg.of(value, cfg.DEFAULT_CONFIG)
    problems: list[ConfigError] = []
    texts: dict[str, str] = {}
    doc = _read(arg, "config", problems, texts)
    if problems:
        raise InvalidInput(_one_line_each(problems))
    if doc is None:
        return cfg.default_config()
    path = resolved(arg.path)
    return cfg.build_config(doc, path, path.parent, texts.get("config"))


def load_project(
    config: str | Path | None = None,
    taskfile: str | Path | None = None,
    datasources: str | Path | None = None,
) -> cfg.Project:
    """Load and check the three files together; raise InvalidInput listing every problem."""
    from mflow.memory import collector_paused

    with collector_paused():
        return _load_project(config, taskfile, datasources)


def _load_project(
    config: str | Path | None, taskfile: str | Path | None, datasources: str | Path | None
) -> cfg.Project:
    problems: list[ConfigError] = []
    try:
        conf = load_config(config)
    except InvalidInput as exc:
        problems.extend(exc.problems)
        conf = cfg.default_config()

    ds_arg = FileArg.of(datasources, cfg.DEFAULT_DATASOURCES)
    ds_doc = _read(ds_arg, "datasources", problems)
    ds_path = resolved(ds_arg.path) if ds_doc is not None else None
    sources = cfg.build_datasources(ds_doc or {}, ds_path, ds_arg.display)
    if ds_doc is not None:
        problems.extend(_duplicate_connections(ds_doc, ds_arg.display))

    default = FileArg.of(taskfile, cfg.DEFAULT_TASKFILE)
    task_arg = FileArg(default.path, default.display, named=True)  # always required
    before = len(problems)
    texts: dict[str, str] = {}
    task_doc = _read(task_arg, "tasks", problems, texts)
    if task_doc is None and not default.named and not default.path.exists():
        problems[-1].hint = "pass --taskfile FILE, or run where tasks.json is"
    task_path = resolved(task_arg.path)
    if task_doc is not None:
        name, specs = cfg.build_tasks(task_doc, task_path, task_arg.display, conf)
        broken: set[str] = set()
    else:
        name, specs = task_path.stem, _lenient_specs(task_arg)
        broken = {p.json_path.split("]")[0] + "]" for p in problems[before:]}
    tasks = _index(specs, problems)
    problems.extend(_check_types(tasks, sources, ds_arg.display, broken))

    from mflow import graph

    problems.extend(graph.check(tasks))
    if problems:
        raise InvalidInput(_one_line_each(_in_file_order(problems)))
    project = cfg.Project(
        config=conf,
        dag=cfg.Dag(
            name=name,
            path=task_path,
            tasks=MappingProxyType(tasks),
            description=task_doc.get("description"),
            text=texts["tasks"],
        ),
        datasources=sources,
        taskfile_display=task_arg.display,
    )
    return project


_TASK_INDEX = re.compile(r"^\$\.tasks\[(\d+)\]")


def _in_file_order(problems: list[ConfigError]) -> list[ConfigError]:
    """Problems in the order of their places in the files.

    Files keep the order they were read in; within a file, problems of task N come after
    those of the document itself and of tasks before N (checks find them in other orders).
    A semantic problem at a place the schema already flagged is left out: `"type": 5` is
    "expected string", not also "unknown task type '5'".
    """
    flagged = {(p.file, p.json_path) for p in problems if isinstance(p, SchemaError)}
    kept = [
        p for p in problems if isinstance(p, SchemaError) or (p.file, p.json_path) not in flagged
    ]
    files = {name: i for i, name in enumerate(dict.fromkeys(p.file for p in kept))}

    def key(problem: ConfigError) -> tuple[int, int]:
        match = _TASK_INDEX.match(problem.json_path)
        return files[problem.file], int(match.group(1)) + 1 if match else 0

    return sorted(kept, key=key)


def _one_line_each(problems: list[ConfigError]) -> list[ConfigError]:
    """The problems, each distinct one once, with unprintable characters escaped.

    A name or id from the file may hold a newline (or \\x85, \\u2028), and each problem
    must stay one line. The same problem at many places (a dependency listed a thousand
    times) is one line at its first place, with how many more there are."""
    seen: dict[tuple[str, str, str | None, str | None, str], ConfigError] = {}
    repeats: dict[int, int] = {}
    for problem in problems:
        problem.message = _printable(problem.message)
        problem.json_path = _printable(problem.json_path)
        if problem.hint is not None:
            problem.hint = _printable(problem.hint)
        if problem.task_id is not None:
            problem.task_id = _printable(problem.task_id)
            if len(problem.task_id) > 80:  # a megabyte id is still one readable line
                problem.task_id = problem.task_id[:77] + "..."
        key = (problem.file, problem.message, problem.task_id, problem.hint, type(problem).__name__)
        first = seen.setdefault(key, problem)
        if first is not problem:
            repeats[id(first)] = repeats.get(id(first), 0) + 1
    kept = list(seen.values())
    for problem in kept:
        more = repeats.get(id(problem))
        if more:
            also = f"{more} more place{'s' if more > 1 else ''} like it"
            problem.hint = f"{problem.hint}; {also}" if problem.hint else also
    return kept


def _printable(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _lenient_specs(arg: FileArg) -> list[cfg.TaskSpec]:
    """Ids and dependencies from a schema-invalid tasks file, so graph problems show too."""
    try:
        doc = cfg.read_document(arg.path, arg.display)
    except ConfigError:
        return []
    raw_tasks = doc.get("tasks") if isinstance(doc, Mapping) else None
    if not isinstance(raw_tasks, list):
        return []
    specs = []
    for index, raw in enumerate(raw_tasks):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
            continue
        depends = raw.get("depends", [])
        if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
            depends = []
        kind = raw.get("type")
        specs.append(
            cfg.TaskSpec(
                id=raw["id"],
                type=kind if isinstance(kind, str) else "",  # "": the schema said what is wrong
                depends=tuple(depends),
                fields=MappingProxyType(dict(raw)),
                source=cfg.Source(arg.display, f"$.tasks[{index}]"),
            )
        )
    return specs


def _index(specs: list[cfg.TaskSpec], problems: list[ConfigError]) -> dict[str, cfg.TaskSpec]:
    tasks: dict[str, cfg.TaskSpec] = {}
    for spec in specs:
        first = tasks.get(spec.id)
        if first is None:
            tasks[spec.id] = spec
            continue
        problems.append(
            ConfigError(
                f"duplicate task id '{spec.id}'",
                file=spec.source.file,
                json_path=f"{spec.source.json_path}.id",
                hint=f"first defined at {first.source.json_path}",
            )
        )
    return tasks


def _duplicate_connections(doc: Mapping[str, Any], display: str) -> list[ConfigError]:
    seen: dict[str, int] = {}
    problems = []
    for index, conn in enumerate(doc.get("connections", [])):
        name = conn["name"]
        if name in seen:
            problems.append(
                ConfigError(
                    f"duplicate connection name '{name}'",
                    file=display,
                    json_path=f"$.connections[{index}].name",
                    hint=f"first defined at $.connections[{seen[name]}]",
                )
            )
        seen.setdefault(name, index)
    return problems


def _check_types(
    tasks: Mapping[str, cfg.TaskSpec],
    sources: cfg.Datasources,
    datasources_file: str,
    broken: set[str],
) -> list[ConfigError]:
    """Unknown types for every task; the type's own checks for schema-valid tasks only."""
    from mflow.tasks import registry

    problems: list[ConfigError] = []
    for spec in tasks.values():
        if not spec.type:  # missing or not a string: the schema reported it
            continue
        if not registry.is_known(spec.type):
            known = registry.known_types()
            problems.append(
                UnknownTaskType(
                    f"unknown task type '{spec.type}'",
                    file=spec.source.file,
                    json_path=f"{spec.source.json_path}.type",
                    task_id=spec.id,
                    hint=_did_you_mean(spec.type, known) + "known: " + ", ".join(sorted(known)),
                )
            )
        elif spec.source.json_path not in broken:
            problems.extend(registry.get(spec.type).check(spec, sources, datasources_file))
    return problems


def _did_you_mean(name: str, known: list[str]) -> str:
    close = get_close_matches(name, known, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def load_datasources(value: str | Path | None) -> cfg.Datasources:
    """The datasources file alone (for commands that need the store, not the DAG)."""
    arg = FileArg.of(value, cfg.DEFAULT_DATASOURCES)
    problems: list[ConfigError] = []
    doc = _read(arg, "datasources", problems)
    if doc is not None:
        problems.extend(_duplicate_connections(doc, arg.display))
    if problems:
        raise InvalidInput(_one_line_each(problems))
    path = resolved(arg.path) if doc is not None else None
    return cfg.build_datasources(doc or {}, path, arg.display)


def open_store_from_files(
    state: str | None, config: str | Path | None, datasources: str | Path | None
) -> StateStore:
    """The store the run of these files would use (for `mflow runs`, `status`, `db init`)."""
    from mflow.state import locate, open_store

    conf = load_config(config)
    return open_store(locate(state, conf.state, load_datasources(datasources)))


def undecryptable_passwords(datasources: cfg.Datasources) -> list[ConfigError]:
    """Every `encrypted_password` the passkey in MFLOW_PASSKEY cannot decrypt (`mflow
    validate`: a wrong passkey is found before the run, not in the middle of it). Nothing is
    checked without a passkey."""
    import os

    from mflow.secrets import PASSKEY_ENV, decrypt

    passkey = os.environ.get(PASSKEY_ENV)
    if not passkey:
        return []
    problems = []
    for conn in datasources.connections.values():
        sealed = conn.get("encrypted_password")
        if not isinstance(sealed, str):
            continue
        try:
            decrypt(sealed, passkey)
        except ValueError as exc:
            problems.append(
                ConfigError(
                    f"connection '{conn.name}': the encrypted_password does not decrypt with "
                    f"{PASSKEY_ENV}: {exc}",
                    file=conn.source.file,
                    json_path=f"{conn.source.json_path}.encrypted_password",
                )
            )
    return problems


def check_task_types(
    tasks: Mapping[str, cfg.TaskSpec], datasources: cfg.Datasources
) -> list[ConfigError]:
    """Unknown types and each type's own checks (connections...) of tasks built elsewhere
    (a job's task: mflow.jobs)."""
    display = str(datasources.path) if datasources.path else cfg.DEFAULT_DATASOURCES
    return _one_line_each(_check_types(tasks, datasources, display, set()))
