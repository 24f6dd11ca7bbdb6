"""fastjsonschema (the fast "valid?" answer) and jsonschema (the list of problems) must give
every document the same verdict: a disagreement either lets a broken file through with no
message or rejects a file without saying why."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource
from strategies import config_documents, datasources_documents, json_values, task_documents

from mflow import schema

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def jsonschema_valid(kind: str, document: Any) -> bool:
    registry = Registry().with_resources(
        (uri, Resource.from_contents(doc)) for uri, doc in schema._documents().items()
    )
    checker = jsonschema.Draft202012Validator(schema.validator(kind).schema, registry=registry)
    return checker.is_valid(document)


def assert_same_verdict(kind: str, document: Any, *, in_hypothesis: bool = True) -> bool:
    fast = schema.validator(kind)._fast_check(document)
    if in_hypothesis:
        event(f"{kind}: {'valid' if fast else 'invalid'}")
    assert fast == jsonschema_valid(kind, document), (
        f"fastjsonschema says {'valid' if fast else 'invalid'}, jsonschema disagrees"
    )
    return fast


@SETTINGS
@given(task_documents())
def test_task_documents_get_the_same_verdict_from_both_validators(document: Any) -> None:
    assert_same_verdict("tasks", document)


@SETTINGS
@given(config_documents())
def test_config_documents_get_the_same_verdict_from_both_validators(document: Any) -> None:
    assert_same_verdict("config", document)


@SETTINGS
@given(datasources_documents())
def test_datasources_documents_get_the_same_verdict_from_both_validators(
    document: Any,
) -> None:
    assert_same_verdict("datasources", document)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["tasks", "config", "datasources"]), json_values)
def test_arbitrary_json_gets_the_same_verdict_from_both_validators(
    kind: str, document: Any
) -> None:
    assert_same_verdict(kind, document)


@pytest.mark.parametrize(
    ("document", "valid"),
    [
        ({"tasks": [{"id": "a", "type": "bash", "command": "x"}]}, True),
        ({"tasks": [{"id": "a", "type": "spark", "ingestor-file": "j", "confs": {"k": 1}}]}, True),
        ({"tasks": [{"id": "a", "type": "unknown-type", "anything": 1}]}, True),
        ({"tasks": [{"id": "a", "type": "bash", "command": "x", "depend": ["b"]}]}, False),
        ({"tasks": [{"id": "a", "command": "x"}]}, False),
        ({"tasks": [None, 3, "a"]}, False),
        ({"tasks": [{"id": "a", "type": "sql", "command": "x", "file": "y", "db": "d"}]}, False),
    ],
)
def test_fast_check_agrees_on_hand_picked_documents(document: Any, valid: bool) -> None:
    assert assert_same_verdict("tasks", document, in_hypothesis=False) is valid


def test_fast_check_is_the_one_problems_uses() -> None:
    # problems() answers [] without jsonschema exactly when the fast check says valid.
    valid = {"tasks": [{"id": "a", "type": "bash", "command": "x"}]}
    invalid = {"tasks": [{"id": "a", "type": "bash"}]}
    assert schema.validator("tasks").problems(valid, "t.json") == []
    assert [str(p) for p in schema.validator("tasks").problems(invalid, "t.json")] == [
        "t.json $.tasks[0]: missing required field 'command' in task 'a'"
    ]


@SETTINGS
@given(task_documents())
def test_problems_found_task_by_task_are_those_of_the_whole_document(document: Any) -> None:
    # problems() gives jsonschema only the tasks fastjsonschema rejected (for speed); the
    # messages must be the ones jsonschema gives for the whole document.
    validator = schema.validator("tasks")
    whole = {
        str(validator._convert(list(e.absolute_path), e, document, "t.json"))
        for e in validator._lister().iter_errors(document)
    }
    assert {str(p) for p in validator.problems(document, "t.json")} == whole
