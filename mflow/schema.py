"""The JSON Schemas in `schemas/`, and validation against them.

The schema files are the single source of truth for what a valid file is. Two validators read
them: fastjsonschema compiles them to Python code and answers "valid?" in about 6 µs a task
(jsonschema takes 50 µs, 5 s for a 100,000-task DAG); only when that answer is "no" does
jsonschema walk the document to list every problem with its JSON path. Both understand the
same keyword subset (tests/unit/test_schema_agreement.py keeps them honest). fastjsonschema
gets copies rewritten for speed with the same meaning (`mflow.fastschema`).

Third-party task types add a branch (`if type == X then <their schema>`) at run time.
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Callable, Iterator, Mapping
from difflib import get_close_matches
from functools import cache
from pathlib import Path
from typing import Any

from mflow.errors import SchemaError
from mflow.fastschema import FastTasks, branch_type, compile_check

SCHEMA_BASE = "https://schemas.mflow.dev/"


def schema_dir() -> Path:
    """`mflow/schemas` in an installed wheel, `schemas/` beside the package in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "schemas"
    return packaged if packaged.is_dir() else here.parent / "schemas"


@cache
def _documents() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(schema_dir().glob("*.schema.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        docs[doc["$id"]] = doc
    return docs


def raw_schema(kind: str) -> dict[str, Any]:
    """The schema document for `kind` ("config", "tasks", "datasources"), as in the file."""
    return _documents()[f"{SCHEMA_BASE}{kind}.schema.json"]


def builtin_type_schemas() -> dict[str, dict[str, Any]]:
    """Task type name -> its `$defs` entry in tasks.schema.json, from the `allOf` branches."""
    tasks = raw_schema("tasks")
    out = {}
    for branch in tasks["$defs"]["task"]["allOf"]:
        name = branch_type(branch)
        ref = branch["then"]["$ref"].rsplit("/", 1)[-1]
        out[name] = tasks["$defs"][ref]
    return out


def common_task_fields() -> list[str]:
    return list(raw_schema("tasks")["$defs"]["common_fields"]["enum"])


def allowed_fields(type_schema: Mapping[str, Any]) -> list[str]:
    return common_task_fields() + [n for n in type_schema.get("properties", {}) if n != "type"]


def _compose_tasks_schema(plugins: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """tasks.schema.json plus one `if type == X then ...` branch per plugin type.

    A plugin that describes its fields gets them checked, unknown ones included; one that
    describes nothing accepts any field."""
    doc = copy.deepcopy(raw_schema("tasks"))
    for name, fragment in sorted(plugins.items()):
        if fragment is None:
            continue
        key = f"plugin_{name}"
        closed = dict(fragment)
        closed["propertyNames"] = {
            "anyOf": [
                {"$ref": "#/$defs/common_fields"},
                {"enum": list(fragment.get("properties", {})) or [""]},
            ]
        }
        doc["$defs"][key] = closed
        doc["$defs"]["task"]["allOf"].append(
            {"if": _type_is(name), "then": {"$ref": f"#/$defs/{key}"}}
        )
    return doc


def _type_is(name: str) -> dict[str, Any]:
    """The `if` of a type branch: an object whose `type` is `name` (and nothing else: a
    missing type or a non-object must not pull in every branch's requirements)."""
    return {"type": "object", "required": ["type"], "properties": {"type": {"const": name}}}


class Validator:
    """Validates one kind of document; `problems()` yields every issue as a SchemaError."""

    def __init__(self, schema: dict[str, Any], type_fields: Mapping[str, list[str]]) -> None:
        self.schema = schema
        self.type_fields = type_fields
        self._fast: Callable[[Any], bool] | None = None
        self._slow: Any = None

    def _fast_check(self, document: Any) -> bool:
        if self._fast is None:
            tasks = self.schema.get("$id") == raw_schema("tasks")["$id"]
            documents = _documents()
            self._fast = (
                FastTasks(self.schema, documents)
                if tasks
                else compile_check(self.schema, documents)
            )
        return self._fast(document)

    def problems(self, document: Any, file: str) -> list[SchemaError]:
        if self._fast_check(document):
            return []
        errors = sorted(self._errors(document), key=_document_order(document))
        found = (self._convert(path, e, document, file) for path, e in errors)
        # jsonschema reports each missing field of one `required` apart; the message names all.
        return list({str(p): p for p in found}.values())

    def _errors(self, document: Any) -> Iterator[tuple[list[Any], Any]]:
        """(JSON path, jsonschema error) for every problem of `document`.

        jsonschema takes about 0.6 ms a task (its `if` branches): in a tasks file it checks the
        document without its tasks, then only the tasks fastjsonschema found invalid, so a typo
        in a 100,000-task DAG is reported in seconds, not in a minute.
        """
        lister = self._lister()
        tasks = document.get("tasks") if isinstance(document, dict) else None
        if not isinstance(self._fast, FastTasks) or not isinstance(tasks, list):
            yield from ((list(e.absolute_path), e) for e in lister.iter_errors(document))
            return
        for error in lister.iter_errors({**document, "tasks": []}):
            yield list(error.absolute_path), error
        task_lister = lister.evolve(schema=self.schema["$defs"]["task"])
        for index in self._fast.invalid_tasks(tasks):
            for error in task_lister.iter_errors(tasks[index]):
                yield ["tasks", index, *error.absolute_path], error

    def _lister(self) -> Any:
        """jsonschema's validator of this schema (built once: building it takes milliseconds)."""
        if self._slow is None:
            import jsonschema
            from referencing import Registry, Resource

            registry = Registry().with_resources(
                (uri, Resource.from_contents(doc)) for uri, doc in _documents().items()
            )
            self._slow = jsonschema.Draft202012Validator(self.schema, registry=registry)
        return self._slow

    def _convert(self, path: list[Any], error: Any, document: Any, file: str) -> SchemaError:
        task_id = _task_id(document, path)
        message, hint = _describe(error, self.type_fields, _task_type(document, path))
        return SchemaError(
            message, file=file, json_path=_json_path(path), task_id=task_id, hint=hint
        )


def _document_order(document: Any) -> Callable[[tuple[list[Any], Any]], list[int]]:
    """A sort key putting (path, error) pairs in the order their places appear in the file."""

    def key(item: tuple[list[Any], Any]) -> list[int]:
        out, node = [], document
        for part in item[0]:
            if isinstance(node, Mapping):
                keys = list(node)
                out.append(keys.index(part) if part in node else len(keys))
                node = node.get(part)
            elif isinstance(node, list) and isinstance(part, int):
                out.append(part)
                node = node[part] if part < len(node) else None
            else:
                out.append(0)
        return out

    return key


def _json_path(path: list[Any]) -> str:
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).replace("_", "").isalnum():
            out += f".{part}"
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def _task_slot(document: Any, path: list[Any]) -> Mapping[str, Any] | None:
    if (
        len(path) >= 2
        and path[0] == "tasks"
        and isinstance(path[1], int)
        and isinstance(document, Mapping)
        and isinstance(document.get("tasks"), list)
        and path[1] < len(document["tasks"])
        and isinstance(document["tasks"][path[1]], Mapping)
    ):
        return document["tasks"][path[1]]
    return None


def _task_id(document: Any, path: list[Any]) -> str | None:
    task = _task_slot(document, path)
    value = task.get("id") if task is not None else None
    return value if isinstance(value, str) else None


def _task_type(document: Any, path: list[Any]) -> str | None:
    task = _task_slot(document, path)
    value = task.get("type") if task is not None else None
    return value if isinstance(value, str) else None


_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
    datetime.date: "a date (quote it)",  # YAML reads 2026-01-31 as a date
    datetime.datetime: "a timestamp (quote it)",
}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _is_secret(name: Any) -> bool:
    from mflow.secrets import is_secret_name

    return is_secret_name(name)


def _redact(value: Any, depth: int = 0) -> Any:
    """`value` with every secret replaced, cut short below a few levels (also ends the
    walk in a YAML document that contains itself)."""
    if depth > 3:
        return "..."
    if isinstance(value, Mapping):
        out = {
            str(k): "(hidden)" if _is_secret(k) else _redact(v, depth + 1) for k, v in value.items()
        }
        if "value" in out and _is_secret(value.get("key")):  # env: [{key, value}]
            out["value"] = "(hidden)"
        return out
    if isinstance(value, list):
        return [_redact(v, depth + 1) for v in value[:10]]
    if isinstance(value, str):
        from mflow.secrets import mask_url

        return mask_url(value)
    return value


def _show(value: Any, key: Any) -> str:
    """A value for a message: never a secret, never a page of JSON."""
    if _is_secret(key):
        return "(hidden)"
    if isinstance(value, str):
        text = repr(_redact(value))
    else:
        text = json.dumps(_redact(value), default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_field(name: Any, allowed: list[str]) -> str | None:
    """The hint for an unknown field: a likely meant name, then every allowed one."""
    close = get_close_matches(str(name), allowed, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return hint + "allowed: " + ", ".join(allowed) if allowed else None


def _describe(
    error: Any, type_fields: Mapping[str, list[str]], task_type: str | None
) -> tuple[str, str | None]:
    """(message, hint) in words a user can act on; never a secret's value."""
    key = error.absolute_path[-1] if error.absolute_path else None
    kind = error.validator
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    hint = schema.get("x-hint")
    if "propertyNames" in error.relative_schema_path:
        allowed = type_fields.get(task_type or "", [])
        return (
            f"unknown field '{error.instance}' for type '{task_type}'",
            _unknown_field(error.instance, allowed),
        )
    if kind == "required":
        missing = [n for n in error.validator_value if n not in error.instance]
        names = ", ".join(f"'{n}'" for n in missing) or "'?'"
        return f"missing required field{'s' if len(missing) > 1 else ''} {names}", hint
    if kind == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        extra = [k for k in error.instance if k not in schema.get("properties", {})]
        names = ", ".join(f"'{k}'" for k in extra)
        return (
            f"unknown field{'s' if len(extra) > 1 else ''} {names}",
            _unknown_field(extra[0], known) if len(extra) == 1 else _unknown_field("", known),
        )
    if kind == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"expected {want}, got {_json_type(error.instance)}", hint
    if kind in ("anyOf", "oneOf") and hint:
        return f"invalid value {_show(error.instance, key)}", hint
    if kind == "pattern":
        return (
            f"invalid value {_show(error.instance, key)}",
            hint or f"must match {schema['pattern']}",
        )
    if kind in ("enum", "const"):
        allowed = error.validator_value if kind == "enum" else [error.validator_value]
        return (
            f"invalid value {_show(error.instance, key)}",
            "one of: " + ", ".join(json.dumps(a) for a in allowed),
        )
    if kind == "minLength":
        return "must not be empty", hint
    if kind in _BOUNDS:
        return (
            f"must be {_BOUNDS[kind]} {error.validator_value}, got {_show(error.instance, key)}",
            hint,
        )
    if _is_secret(key) or isinstance(error.instance, Mapping | list):
        # jsonschema's own message quotes the whole value, secrets included.
        return f"invalid value {_show(error.instance, key)}", hint
    return error.message, hint


_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


def validator(kind: str, *, plugins: bool = True) -> Validator:
    """The validator for one document kind; for "tasks", including plugin task types unless
    `plugins` is false (for a document whose tasks are all of built-in types: the plugins'
    branches cannot apply to it, and finding the plugins costs every start ~20 ms)."""
    return _validator(kind, plugins and kind == "tasks")


@cache
def _validator(kind: str, with_plugins: bool) -> Validator:
    from mflow.tasks.registry import plugin_schemas

    type_fields = {n: allowed_fields(s) for n, s in builtin_type_schemas().items()}
    if kind != "tasks":
        return Validator(raw_schema(kind), type_fields)
    plugins = plugin_schemas() if with_plugins else {}
    type_fields.update({n: allowed_fields(s) for n, s in plugins.items() if s is not None})
    return Validator(_compose_tasks_schema(plugins), type_fields)
