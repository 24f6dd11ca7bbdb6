"""What the files say: config.json, tasks.json and the datasources as frozen dataclasses.

Documents may be JSON or YAML (by extension). The builders here assume the document already
passed its JSON Schema (`mflow.schema`); semantic checks live in `mflow.project`. Relative paths
inside a file resolve against that file's directory.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from mflow.errors import ConfigError

DEFAULT_CONFIG = "config.json"
DEFAULT_TASKFILE = "tasks.json"
DEFAULT_DATASOURCES = "oracle.json"

Env = tuple[tuple[str, str], ...]

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_duration(value: float | int | str) -> float:
    """Seconds from 90, "90", "30m", "2h", "1d". Raises ValueError.

    An integer too large for a float (JSON allows 10**400) is infinity: never.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(value)
        try:
            return float(value)
        except OverflowError:
            return math.inf
    match = _DURATION.match(value.strip())
    if not match:
        raise ValueError(value)
    return float(match.group(1)) * _UNITS[match.group(2)]


def expand_vars(value: str, env: Mapping[str, str]) -> str:
    """Replace ${VAR} with env[VAR] (empty when unset, as a shell does)."""
    if "${" not in value:
        return value
    return _VAR.sub(lambda m: env.get(m.group(1), ""), value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def env_pairs(value: Any) -> Env:
    """Normalise an env field (object, or the seed's list of {key, value}) to pairs."""
    if not value:
        return ()
    if isinstance(value, Mapping):
        return tuple((str(k), _scalar(v)) for k, v in value.items())
    return tuple((str(item["key"]), _scalar(item["value"])) for item in value)


def _resolve(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


def resolve_url(url: str, base: Path) -> str:
    """Make a relative sqlite:/// path absolute against the directory of the file naming it.

    A path that starts with ${VAR} is left alone: it is expanded at connect time, and the
    variable (`${DATA_DIR}/wh.db`) usually holds an absolute path.
    """
    prefix, sep, rest = url.partition(":///")
    absolute = rest.startswith(("/", ":memory:", "${"))
    if sep and prefix.startswith("sqlite") and rest and not absolute:
        return f"{prefix}:///{(base / rest).resolve()}"
    return url


# --------------------------------------------------------------------------- documents


def read_document(path: Path, display: str | None = None) -> Any:
    """Parse JSON or YAML (by extension). Errors name the file, line and column."""
    return parse_document(read_text(path, display), path, display)


def read_text(path: Path, display: str | None = None) -> str:
    """A document's text (UTF-8, a BOM dropped). Errors name the file."""
    name = display or str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found", file=name, json_path="") from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a file", file=name, json_path="") from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=name, json_path="") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, column = _line_column(data, exc.start, b"\n")
        raise ConfigError(
            f"not a UTF-8 text file: byte 0x{data[exc.start]:02x} at line {line}, column {column}",
            file=name,
            json_path="",
        ) from None
    if not text.strip():
        raise ConfigError("file is empty", file=name, json_path="")
    return text


def parse_document(text: str, path: Path, display: str | None = None) -> Any:
    """A document's text parsed as JSON or YAML (by the path's extension)."""
    name = display or str(path)
    doc = (
        _parse_yaml(text, name)
        if path.suffix.lower() in (".yaml", ".yml")
        else _parse_json(text, name)
    )
    if "\x00" in text or "\\u0000" in text or "\\0" in text or "\\x00" in text:  # rare
        where = _nul_at(doc)
        if where is not None:
            raise ConfigError(
                "a NUL character in a string: no command, argument or variable can hold one",
                file=name,
                json_path=where,
            )
    return doc


def _nul_at(value: Any, path: str = "$") -> str | None:
    """The JSON path of the first string (or key) holding a NUL character, or None."""
    stack = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return where
        elif isinstance(node, Mapping):
            for key, item in reversed(list(node.items())):
                if isinstance(key, str) and "\x00" in key:
                    return where
                stack.append((f"{where}.{key}", item))
        elif isinstance(node, list):
            stack.extend((f"{where}[{i}]", item) for i, item in reversed(list(enumerate(node))))
    return None


def _line_column(text: Any, offset: int, newline: Any = "\n") -> tuple[int, int]:
    """1-based line and column of `offset` in `text` (str or bytes)."""
    return text.count(newline, 0, offset) + 1, offset - text.rfind(newline, 0, offset)


class _BadNumber(ValueError):
    """A number JSON cannot hold (NaN, Infinity, 1e400): raised from json's parse hooks."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.token = token


def _reject_constant(token: str) -> float:
    raise _BadNumber(token)


def _finite_float(token: str) -> float:
    value = float(token)
    if math.isinf(value):
        raise _BadNumber(token)
    return value


def _position(text: str, token: str) -> str:
    """' at line L, column C' of the first `token` outside a string, or ''."""
    pattern = re.compile(r'"(?:[^"\\]|\\.)*"|' + re.escape(token))
    for match in pattern.finditer(text):
        if not match.group().startswith('"'):
            line, column = _line_column(text, match.start())
            return f" at line {line}, column {column}"
    return ""


def _parse_json(text: str, name: str) -> Any:
    def invalid(message: str) -> ConfigError:
        return ConfigError(f"invalid JSON{message}", file=name, json_path="")

    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise invalid(f" at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except _BadNumber as exc:
        where = _position(text, exc.token)
        raise invalid(f"{where}: {exc.token} is not a finite number") from None
    except RecursionError:
        raise invalid(": nested too deeply") from None
    except ValueError as exc:  # an integer with more than sys.get_int_max_str_digits() digits
        raise invalid(f": {str(exc).split(';')[0]}") from None


@cache
def _yaml_loader() -> type:
    """The safe loader, made to refuse what JSON cannot hold: non-string keys (`5:`, `yes:`,
    a date), NaN and infinities. A document then means the same in YAML and in JSON."""
    import yaml
    from yaml.constructor import ConstructorError

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    str_tag = "tag:yaml.org,2002:str"

    class Loader(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            mapping = super().construct_mapping(node, deep=deep)
            for key_node, _ in node.value:  # merge keys (<<) are already flattened away
                if key_node.tag != str_tag:
                    raise ConstructorError(
                        None,
                        None,
                        f'key {key_node.value} is not a string (write "{key_node.value}")',
                        key_node.start_mark,
                    )
            return mapping

        def construct_finite_float(self, node: Any) -> float:
            value = self.construct_yaml_float(node)
            if not math.isfinite(value):
                raise ConstructorError(
                    None, None, f"{node.value} is not a finite number", node.start_mark
                )
            return value

    Loader.add_constructor("tag:yaml.org,2002:float", Loader.construct_finite_float)
    return Loader


def _parse_yaml(text: str, name: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context
        if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
            problem = f"{problem} (a tab: YAML indents with spaces only)"
        raise ConfigError(f"invalid YAML{where}: {problem}", file=name, json_path="") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=name, json_path="") from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", file=name, json_path="") from None
    except ValueError as exc:  # an integer with more than sys.get_int_max_str_digits() digits
        message = str(exc).split(";")[0]
        raise ConfigError(f"invalid YAML: {message}", file=name, json_path="") from None


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    return lines[line][column : column + 1] if line < len(lines) else ""


# --------------------------------------------------------------------------- config.json


@dataclass(frozen=True)
class Config:
    """config.json. The defaults here are the only ones: a missing key, a missing file and
    the README all mean these values."""

    path: Path | None = None
    max_process_concurrency: int = 3
    check_new_config_interval: float = 1.0
    log_directory: Path = Path("logs")  # relative: to config.json's directory, or the cwd
    env: Env = ()
    state: str | None = None
    retries: int = 0
    retry_delay: float = 10.0
    timeout: float | None = None
    executor: str = "local"  # or "celery" (SPEC §10)
    broker: str | None = None
    result_backend: str | None = None
    visibility_timeout: float | None = None
    text: str | None = field(default=None, repr=False)  # as read (mflow.plan.snapshot)


_DEFAULT = Config()


def default_config() -> Config:
    """The configuration of a run without config.json."""
    return Config(log_directory=Path.cwd() / _DEFAULT.log_directory)


def build_config(
    doc: Mapping[str, Any], path: Path | None, base: Path, text: str | None = None
) -> Config:
    """A Config from a schema-valid document; `base` is the directory paths resolve against."""
    timeout = doc.get("timeout", _DEFAULT.timeout)
    state = doc.get("state")
    return Config(
        path=path,
        max_process_concurrency=int(
            doc.get("max_process_concurrency", _DEFAULT.max_process_concurrency)
        ),
        check_new_config_interval=float(
            doc.get("check_new_config_interval", _DEFAULT.check_new_config_interval)
        ),
        log_directory=_resolve(base, doc.get("log_directory", str(_DEFAULT.log_directory))),
        env=env_pairs(doc.get("env")),
        state=resolve_url(state, base) if state else None,
        retries=int(doc.get("retries", _DEFAULT.retries)),
        retry_delay=parse_duration(doc.get("retry_delay", _DEFAULT.retry_delay)),
        timeout=parse_duration(timeout) if timeout is not None else None,
        executor=str(doc.get("executor", _DEFAULT.executor)),
        broker=doc.get("broker"),
        result_backend=doc.get("result_backend"),
        visibility_timeout=(
            parse_duration(doc["visibility_timeout"]) if "visibility_timeout" in doc else None
        ),
        text=text,
    )


# --------------------------------------------------------------------------- tasks.json


@dataclass(frozen=True)
class Source:
    """Where something was defined: for messages that say which file and JSON path."""

    file: str
    json_path: str


@dataclass(frozen=True)
class TaskSpec:
    id: str
    type: str
    depends: tuple[str, ...] = ()
    retries: int = 0
    retry_delay: float = 10.0
    timeout: float | None = None
    env: Env = ()
    cwd: Path | None = None
    description: str | None = None
    # Every field of the task as written (type-specific ones included), read-only.
    fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    source: Source = Source("", "$")
    base_dir: Path = Path(".")  # the tasks file's directory: relative paths resolve here

    def path(self, value: str) -> Path:
        """A path field of this task, resolved against the tasks file's directory."""
        return _resolve(self.base_dir, value)


@dataclass(frozen=True)
class Dag:
    name: str
    path: Path
    tasks: Mapping[str, TaskSpec]  # in file order
    description: str | None = None
    text: str = field(default="", repr=False)  # the file as read (mflow.plan.snapshot)

    @property
    def edges(self) -> int:
        """Dependency edges; a dependency listed twice is one edge."""
        return sum(len(set(t.depends)) for t in self.tasks.values())


def build_tasks(
    doc: Mapping[str, Any], path: Path, display: str, config: Config
) -> tuple[str, list[TaskSpec]]:
    """(dag name, task specs) from a schema-valid tasks document; duplicates kept for checks.

    A task's own value wins over the DAG's `defaults`, which win over config.json.
    """
    base = path.parent
    defaults = doc.get("defaults") or {}
    # What a task gets when it does not say: worked out once, not once per task.
    retries = int(defaults.get("retries", config.retries))
    retry_delay = parse_duration(defaults.get("retry_delay", config.retry_delay))
    timeout = defaults.get("timeout", config.timeout)
    timeout = parse_duration(timeout) if timeout is not None else None
    cwd = _resolve(base, defaults["cwd"]) if "cwd" in defaults else base
    env = env_pairs(defaults.get("env"))
    specs = []
    for index, raw in enumerate(doc.get("tasks", [])):
        specs.append(
            TaskSpec(
                id=raw["id"],
                type=raw["type"],
                depends=tuple(raw.get("depends", ())),
                retries=int(raw["retries"]) if "retries" in raw else retries,
                retry_delay=(
                    parse_duration(raw["retry_delay"]) if "retry_delay" in raw else retry_delay
                ),
                timeout=parse_duration(raw["timeout"]) if "timeout" in raw else timeout,
                env=env + env_pairs(raw["env"]) if "env" in raw else env,
                cwd=_resolve(base, raw["cwd"]) if "cwd" in raw else cwd,
                description=raw.get("description"),
                fields=MappingProxyType(raw),
                source=Source(display, f"$.tasks[{index}]"),
                base_dir=base,
            )
        )
    return doc.get("name") or path.stem, specs


# --------------------------------------------------------------------------- datasources


@dataclass(frozen=True, repr=False)
class Datasource:
    """One named connection. `repr` and `str` never show a secret."""

    name: str
    kind: str  # "oracle" (connection_string), "sql" (url) or "tigergraph"
    fields: Mapping[str, Any]
    source: Source = Source("", "$")

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def __repr__(self) -> str:
        from mflow.secrets import is_secret_name, mask_url

        shown = {
            k: ("***" if is_secret_name(k) else mask_url(v) if isinstance(v, str) else v)
            for k, v in self.fields.items()
            if k != "name"
        }
        return f"Datasource(name={self.name!r}, kind={self.kind!r}, {shown})"

    __str__ = __repr__


@dataclass(frozen=True)
class Datasources:
    path: Path | None = None
    connections: Mapping[str, Datasource] = field(default_factory=dict)

    def __contains__(self, name: object) -> bool:
        return name in self.connections

    def __getitem__(self, name: str) -> Datasource:
        return self.connections[name]

    def fields(self) -> list[Mapping[str, Any]]:
        """Each connection's fields (for `mflow.secrets.secret_variables`)."""
        return [c.fields for c in self.connections.values()]


def build_datasources(doc: Mapping[str, Any], path: Path | None, display: str) -> Datasources:
    """Datasources from a schema-valid document (duplicate names are left to the checks)."""
    base = path.parent if path else Path.cwd()
    connections: dict[str, Datasource] = {}
    for index, raw in enumerate(doc.get("connections", [])):
        fields = dict(raw)
        if "url" in fields:
            fields["url"] = resolve_url(fields["url"], base)
            kind = "sql"
        elif fields.get("kind") == "tigergraph":
            kind = "tigergraph"
        else:
            kind = "oracle"
        connections.setdefault(
            raw["name"],
            Datasource(
                name=raw["name"],
                kind=kind,
                fields=MappingProxyType(fields),
                source=Source(display, f"$.connections[{index}]"),
            ),
        )
    return Datasources(path=path, connections=MappingProxyType(connections))


# --------------------------------------------------------------------------- a project


@dataclass(frozen=True)
class Project:
    """The config, the DAG and the datasources of one run, loaded and checked together
    (`mflow.project.load_project`)."""

    config: Config
    dag: Dag
    datasources: Datasources
    taskfile_display: str
