"""The web view in a real browser (issue 17): Debian's chromium driven by playwright
(`executable_path`, no downloaded browser) against a real `mflow serve`.

An operator opens the runs page, clicks into a run, sees its DAG and clicks a task to read
its log; then opens the log of a task that is still running and watches it grow.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import service_unavailable
from mflow_cli import MflowRunner
from serving import TOKEN, serve
from support import bash

pytest.importorskip("fastapi")
playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("MFLOW_TEST_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        service_unavailable(f"no chromium at {CHROMIUM} (Debian package chromium)")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def write(path: Path, tasks: list[dict[str, Any]], name: str) -> None:
    path.write_text(json.dumps({"name": name, "tasks": tasks}))


def test_an_operator_reads_a_run_and_follows_a_running_log(
    browser: Any, tmp_path: Path, mflow: MflowRunner, mflow_env: dict[str, str]
) -> None:
    url = f"sqlite:///{tmp_path / 'mflow-home' / 'state.db'}"
    write(
        tmp_path / "nightly.json",
        [
            bash("extract", "echo extracted 100 rows"),
            bash("clean", "echo cleaned", "extract"),
            bash("load", "echo loaded into the warehouse", "clean"),
        ],
        "nightly",
    )
    assert mflow("--taskfile", "nightly.json", "--state", url).code == 0
    write(
        tmp_path / "ticker.json",
        [bash("tick", "for i in $(seq 1 40); do echo tick $i; sleep 0.25; done")],
        "ticker",
    )
    with serve(tmp_path, mflow_env, "--state", url, "--root", str(tmp_path)) as server:
        page = browser.new_page()
        # Signed in once: the token is kept in a cookie that only reads.
        page.goto(f"{server.url}/runs")
        assert "/login" in page.url
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/runs")

        page.click("#runs a:text-is('nightly')")
        page.wait_for_url(f"{server.url}/runs/1")
        nodes = page.locator("svg.dag a.node")
        assert nodes.count() == 3
        assert page.locator("svg.dag a.node.st-SUCCESS text", has_text="load").count() == 1
        assert page.locator("svg.gantt a.bar").count() == 3

        page.locator("svg.dag a.node", has_text="load").click()
        page.wait_for_url(f"{server.url}/runs/1/tasks/load")
        assert "loaded into the warehouse" in page.locator("pre#log").inner_text()

        # A running task: its log page follows the file as the task writes it.
        code, body = server.call("POST", "/v1/runs", {"taskfile": "ticker.json"})
        assert code == 202, body
        run = body["run_id"]
        page.goto(f"{server.url}/runs/{run}/tasks/tick")
        page.wait_for_selector("#following")
        log = page.locator("pre#log")
        page.wait_for_function(
            "document.getElementById('log').textContent.includes('tick 3')", timeout=20_000
        )
        seen = log.inner_text().count("tick ")
        page.wait_for_function(
            "document.getElementById('log').textContent.includes('tick 12')", timeout=20_000
        )
        assert log.inner_text().count("tick ") > seen  # it grew without a reload
        lines = [line for line in log.inner_text().splitlines() if line.startswith("tick ")]
        assert lines == [f"tick {i}" for i in range(1, len(lines) + 1)]  # none twice or lost
        server.call("POST", f"/v1/runs/{run}/stop")
        page.wait_for_function(
            "document.getElementById('following').textContent === 'ended'", timeout=30_000
        )
        # The runs page shows the stopped run (htmx swaps the live part in while a run
        # shows as running: no reload).
        page.goto(f"{server.url}/runs")
        page.wait_for_selector("#runs .b-CANCELLED", timeout=15_000)
