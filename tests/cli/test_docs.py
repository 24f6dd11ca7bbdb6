"""Every command the READMEs tell a new user to type works as written, on a fresh copy.

Code blocks marked ```sh in README.md and examples/*/README.md are run, line by line, in a
copy of the repository's files (what `git ls-files` lists) with a fresh MFLOW_HOME: `cd` moves
on, `# exit status N` on the line or the comment lines after it says which exit status the
line must give (0 otherwise), and `# OK: ...` says how its output starts. Blocks in other
languages (`bash`, `text`, `console`, `json`...) are illustrations, not run: the test command
itself (`scripts/test`, which runs this file) and the benchmarks (minutes each).

README.md's first block creates a virtual environment and installs mflow in it, so it runs in
a copy of its own (slow); the examples run with this interpreter's `mflow` on the PATH.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from mflow_cli import REPO

FENCE = re.compile(r"^```(\w*)\s*$")
EXIT = re.compile(r"exit (?:status |code )?(\d+)")


@dataclass
class Line:
    command: str
    expect_code: int
    expect_start: str | None
    where: str


def sh_lines(readme: Path) -> list[Line]:
    """The commands of the readme's ```sh blocks, with what each must give."""
    lines: list[Line] = []
    language = None
    rel = readme.relative_to(REPO) if readme.is_relative_to(REPO) else readme
    for number, text in enumerate(readme.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(text)
        if fence:
            language = None if language is not None else fence.group(1)
            continue
        if language != "sh" or not text.strip():
            continue
        command, _, comment = text.partition(" #")
        if text.lstrip().startswith("#"):
            command, comment = "", text.lstrip()[1:]
        found = EXIT.search(comment)
        if not command.strip():  # a comment line: about the command before it
            if found and lines:
                lines[-1].expect_code = int(found.group(1))
            continue
        start = comment.strip()
        lines.append(
            Line(
                command.strip(),
                int(found.group(1)) if found else 0,
                start if start.startswith("OK:") else None,
                f"{rel}:{number}",
            )
        )
    return lines


def copy_repo(target: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout
    for name in filter(None, files.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def run_lines(lines: list[Line], repo: Path, env: dict[str, str], timeout: float = 120) -> None:
    cwd = repo
    for line in lines:
        words = shlex.split(line.command)
        if words[0] == "cd":
            cwd = (cwd / words[1]).resolve()
            continue
        done = subprocess.run(
            ["bash", "-c", line.command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        said = f"{line.where}: {line.command}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        assert done.returncode == line.expect_code, said
        if line.expect_start:
            assert done.stdout.startswith(line.expect_start), said
        assert "Traceback" not in done.stderr, said


def example_readmes() -> list[Path]:
    return sorted(REPO.glob("examples/*/README.md"))


@pytest.mark.parametrize("readme", example_readmes(), ids=lambda p: p.parent.name)
def test_every_command_of_an_example_readme_works_as_written(readme: Path, tmp_path: Path) -> None:
    lines = sh_lines(readme)
    assert lines, f"{readme} has no ```sh block"
    repo = copy_repo(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFLOW_")}
    env.update(
        MFLOW_HOME=str(tmp_path / "home"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    run_lines(lines, repo, env)


@pytest.mark.slow
def test_the_readmes_first_command_installs_mflow_and_runs_the_demo(tmp_path: Path) -> None:
    lines = sh_lines(REPO / "README.md")
    assert lines and lines[0].command.startswith("python3 -m venv .venv")
    repo = copy_repo(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MFLOW_", "VIRTUAL_ENV"))}
    env["MFLOW_HOME"] = str(tmp_path / "home")
    run_lines(lines, repo, env, timeout=600)
    assert (tmp_path / "home" / "state.db").exists()
    status = subprocess.run(
        [str(repo / ".venv" / "bin" / "mflow"), "status", "--json"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert '"status": "SUCCESS"' in status.stdout, status.stdout + status.stderr


def test_the_readme_parser_reads_commands_codes_and_outputs(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "```sh\ncd x\nmflow validate   # OK: 1 task\nmflow bad\n# exit status 2\n```\n"
        "```bash\nnot run\n```\n"
    )
    found = [(line.command, line.expect_code, line.expect_start) for line in sh_lines(readme)]
    assert found == [("cd x", 0, None), ("mflow validate", 0, "OK: 1 task"), ("mflow bad", 2, None)]
