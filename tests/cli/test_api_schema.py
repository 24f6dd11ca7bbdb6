"""The REST API against its own OpenAPI document (issue 17): schemathesis sends what the
document allows to every operation; no answer may be a 5xx, and every answer must match the
document (status codes, content types, bodies); what it must refuse, it refuses.

The app runs in this process (ASGI) on a SQLite store that a real `mflow` run filled, with no
token (as `mflow serve` on 127.0.0.1 runs), so writes are exercised too. Operations are
driven with hypothesis directly (schemathesis's pytest plugin does not yet work on pytest 9).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from mflow_cli import MflowRunner
from support import bash

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from mflow.api.app import create_app  # noqa: E402
from mflow.api.common import ApiSettings  # noqa: E402


def fuzz(operation: object, tried: dict[str, int]) -> None:
    label = operation.label  # type: ignore[attr-defined]

    @given(case=operation.as_strategy())  # type: ignore[attr-defined]
    @settings(
        max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case: object) -> None:
        # A job document's fields depend on its type (mflow's own JSON Schema checks them,
        # answering 400 with the JSON path): a schema-valid body may still be refused.
        case.call_and_validate(excluded_checks=[positive_data_acceptance])  # type: ignore[attr-defined]
        tried[label] = tried.get(label, 0) + 1

    check()


def test_no_server_error_and_every_answer_as_documented(tmp_path: Path, mflow: MflowRunner) -> None:
    (tmp_path / "tasks.json").write_text(
        json.dumps({"name": "fuzzed", "tasks": [bash("a", "echo hi"), bash("b", "true", "a")]})
    )
    url = f"sqlite:///{tmp_path / 'mflow-home' / 'state.db'}"
    assert mflow("--state", url).code == 0
    app = create_app(ApiSettings(state=url, root=tmp_path / "no-dags-here"))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    tried: dict[str, int] = {}
    try:
        for operation in operations:
            fuzz(operation, tried)
    finally:
        app.state.store.close()
    assert len(tried) == len(operations)
