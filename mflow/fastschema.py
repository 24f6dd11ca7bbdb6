"""Validation at speed: the schemas of `schemas/` rewritten for fastjsonschema.

`mflow.schema` answers "valid?" with the checks compiled here (about 6 µs a task) and only
asks jsonschema, which lists every problem with its JSON path, when the answer is "no". The
copies compiled here have the same meaning as the files (tests/unit/test_schema_agreement.py
compares the verdicts) and are rewritten only for fastjsonschema's sake: `$ref`s inlined,
`propertyNames` alternatives merged, one validator per task type.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urldefrag, urljoin


def branch_type(branch: Mapping[str, Any]) -> str:
    return branch["if"]["properties"]["type"]["const"]


def compile_check(schema: Mapping[str, Any], documents: Mapping[str, Any]) -> Callable[[Any], bool]:
    """fastjsonschema's compiled check of `schema`, answering True (valid) or False.

    It compiles a copy rewritten for speed, with the same meaning: `$ref`s inlined (each one
    a function call, and for array items a `str.format(**locals())`, per value) and
    `propertyNames` alternatives merged into one `enum` (`anyOf` is try/except: an exception
    per name outside the first list).
    """
    import fastjsonschema

    check = fastjsonschema.compile(
        _flatten_name_enums(_inline_refs(schema, documents)),
        handlers={"https": documents.__getitem__},
        use_default=False,
    )

    def valid(document: Any) -> bool:
        try:
            check(document)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return valid


class FastTasks:
    """The fast check of a tasks document, one task at a time with the validator of its type.

    fastjsonschema runs `if` as try/except: with every type's branch in `allOf`, each task
    raised and caught an exception per other type (about 70 µs a task, 7 s for 100,000
    tasks). A task that is an object with a string `type` takes exactly the branches whose
    `if` names that type, and any other task none, so checking it against the task schema with
    only those branches' `then` gives the same verdict without the exceptions
    (tests/unit/test_schema_agreement.py compares the verdicts with jsonschema's).
    """

    def __init__(self, schema: Mapping[str, Any], documents: Mapping[str, Any]) -> None:
        self.schema = schema
        self.documents = documents
        outer = copy.deepcopy(dict(schema))
        outer["properties"]["tasks"] = {"type": "array"}  # the items are checked below
        self._document = compile_check(outer, documents)
        self._types = {branch_type(b) for b in schema["$defs"]["task"]["allOf"]}
        self._by_type: dict[str | None, Callable[[Any], bool]] = {}

    def _task_validator(self, type_name: str | None) -> Callable[[Any], bool]:
        found = self._by_type.get(type_name)
        if found is None:
            doc = copy.deepcopy(dict(self.schema))
            task = doc["$defs"]["task"]
            task["allOf"] = [b["then"] for b in task["allOf"] if branch_type(b) == type_name]
            root = {k: v for k, v in doc.items() if k.startswith("$") and k != "$ref"}
            found = compile_check({**root, "$ref": "#/$defs/task"}, self.documents)
            self._by_type[type_name] = found
        return found

    def __call__(self, document: Any) -> bool:
        if not self._document(document):
            return False
        return next(self._invalid(document["tasks"]), None) is None

    def invalid_tasks(self, tasks: list[Any]) -> list[int]:
        """The indexes of the tasks that do not match the task schema."""
        return list(self._invalid(tasks))

    def _invalid(self, tasks: list[Any]) -> Iterator[int]:
        validators = self._by_type
        for index, task in enumerate(tasks):
            kind = task.get("type") if isinstance(task, dict) else None
            if not isinstance(kind, str) or kind not in self._types:
                kind = None  # no branch applies: the common fields only
            check = validators.get(kind) or self._task_validator(kind)
            if not check(task):
                yield index


_ANNOTATIONS = frozenset({"description", "title", "x-hint", "default", "examples"})


def _inline_refs(schema: Mapping[str, Any], known: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `schema` with each `$ref` replaced by the schema it names (in `schema` itself
    or in another file of `schemas/`). The schemas have no recursive reference."""
    documents = dict(known)
    base = schema.get("$id", "")
    if base:
        documents[base] = dict(schema)

    def resolve(ref: str, base: str, active: frozenset[str]) -> Any:
        full = urljoin(base, ref)
        if full in active:  # a recursive schema: leave this one to fastjsonschema's resolver
            return {"$ref": full}
        uri, fragment = urldefrag(full)
        node: Any = documents[uri]
        for part in filter(None, fragment.split("/")):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return inline(node, uri, active | {full})

    def inline(node: Any, base: str, active: frozenset[str] = frozenset()) -> Any:
        if isinstance(node, list):
            return [inline(v, base, active) for v in node]
        if not isinstance(node, Mapping):
            return node
        out = {k: inline(v, base, active) for k, v in node.items() if k not in ("$ref", "$defs")}
        if "$ref" not in node:
            return out
        target = resolve(node["$ref"], base, active)
        if set(out) <= _ANNOTATIONS:
            return target
        return {**out, "allOf": [*out.get("allOf", []), target]}

    out = inline(schema, base)
    out.pop("$id", None)
    return out


def _flatten_name_enums(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` where `propertyNames: {anyOf: [{enum: A}, {enum: B}]}` is `{enum: A + B}`."""

    def names(option: Any) -> list[Any] | None:
        if isinstance(option, Mapping) and set(option) - _ANNOTATIONS == {"enum"}:
            return list(option["enum"])
        return None

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            rule = node.get("propertyNames")
            if isinstance(rule, dict) and set(rule) == {"anyOf"}:
                lists = [names(o) for o in rule["anyOf"]]
                if all(n is not None for n in lists):
                    node["propertyNames"] = {"enum": [v for n in lists for v in n or ()]}
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema
